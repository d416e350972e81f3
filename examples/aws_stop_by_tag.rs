//! Stop (or start) every EC2 instance carrying a tag, against real AWS or an emulator.
//!
//! ```text
//! # moto: .venv/bin/moto_server -p 5000 &   (scripts/test installs it)
//! cargo run -p snoozebot-examples --features aws --example aws_stop_by_tag -- \
//!     --endpoint-url http://127.0.0.1:5000 --region us-east-1 --tag snoozebot=idle --seed 5
//! # real AWS, credentials from the usual chain; --dry-run asks EC2 whether it would work:
//! cargo run -p snoozebot-examples --features aws --example aws_stop_by_tag -- \
//!     --region eu-west-1 --tag snoozebot=idle --dry-run
//! ```
//!
//! Options: `--region R`, `--endpoint-url URL`, `--tag KEY=VALUE` (required), `--start` (start
//! instead of stop), `--hibernate`, `--dry-run`, `--seed N` (launch N tagged instances first;
//! for emulators).

use std::sync::Arc;
use std::time::Duration;

use snoozebot_aws::AwsProviderBuilder;
use snoozebot_core::{
    CloudProvider, InstanceFilter, InstanceState, ProviderBuilder, RetryConfig, StopMode,
    StopOptions,
};

#[derive(Default)]
struct Args {
    region: Option<String>,
    endpoint_url: Option<String>,
    tag: Option<(String, String)>,
    start: bool,
    hibernate: bool,
    dry_run: bool,
    seed: i32,
}

const USAGE: &str = "\
usage: aws_stop_by_tag --tag KEY=VALUE [--region R] [--endpoint-url URL] [--start]
                       [--hibernate] [--dry-run] [--seed N]

Stops (or with --start starts) the EC2 instances tagged KEY=VALUE.
  --tag KEY=VALUE       which instances (required)
  --region R            the region (else AWS_REGION or the profile's)
  --endpoint-url URL    an emulator such as moto (then any credentials do)
  --start               start instead of stop
  --hibernate           hibernate where the instance can, else stop
  --dry-run             ask EC2 whether it would work, change nothing
  --seed N              launch N tagged instances first (emulators)
  -h, --help            this text";

/// The parsed arguments, or `None` when help was asked for (and printed).
fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args::default();
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = |name: &str| words.next().ok_or(format!("{name} needs a value"));
        match word.as_str() {
            "--region" => args.region = Some(value("--region")?),
            "--endpoint-url" => args.endpoint_url = Some(value("--endpoint-url")?),
            "--tag" => {
                let tag = value("--tag")?;
                let (key, val) = tag.split_once('=').ok_or("--tag takes KEY=VALUE")?;
                args.tag = Some((key.to_owned(), val.to_owned()));
            }
            "--seed" => {
                args.seed = value("--seed")?
                    .parse()
                    .map_err(|_| "--seed takes a number")?
            }
            "--start" => args.start = true,
            "--hibernate" => args.hibernate = true,
            "--dry-run" => args.dry_run = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The error's own words, not a struct dump.
        Err(error) => {
            eprintln!("aws_stop_by_tag: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let (key, value) = args.tag.clone().ok_or("--tag KEY=VALUE is required")?;

    let mut builder = AwsProviderBuilder::new();
    if let Some(region) = &args.region {
        builder = builder.region(region);
    }
    if let Some(url) = &args.endpoint_url {
        // Emulators accept any credentials; real endpoints use the standard chain.
        builder = builder
            .endpoint(url)
            .static_credentials("testing", "testing");
    }
    let ec2 = builder.build_resolved().await?;

    if args.seed > 0 {
        let client = ec2.client().await?;
        let image = client
            .describe_images()
            .send()
            .await?
            .images()
            .first()
            .and_then(|i| i.image_id().map(str::to_owned));
        let image = image.ok_or("the endpoint has no images to launch")?;
        client
            .run_instances()
            .image_id(image)
            .min_count(args.seed)
            .max_count(args.seed)
            .tag_specifications(aws_tag_spec(&key, &value))
            .send()
            .await?;
        println!("launched {} instances tagged {key}={value}", args.seed);
    }

    let provider = ProviderBuilder::new(Arc::new(ec2))
        .retry(RetryConfig::default())
        .timeout(Duration::from_secs(60))
        .build();
    let wanted = if args.start {
        InstanceState::Stopped
    } else {
        InstanceState::Running
    };
    let instances = provider
        .list_instances(
            &InstanceFilter::new()
                .with_tag(&key, &value)
                .with_state(wanted),
        )
        .await?;
    let ids: Vec<_> = instances.iter().map(|info| info.id.clone()).collect();
    println!("{} {wanted} instances tagged {key}={value}", ids.len());

    let results = if args.start {
        provider.start_instances(&ids).await
    } else {
        let mut opts = StopOptions::default()
            .with_dry_run(args.dry_run)
            .with_allow_fallback(true);
        if args.hibernate {
            opts = opts.with_mode(StopMode::Hibernate);
        }
        provider.stop_instances(&ids, &opts).await
    };
    let mut failures = 0;
    for (id, result) in results {
        match result {
            Ok(change) => println!(
                "{id}  {} -> {}{}",
                change.previous,
                change.current,
                change
                    .mode
                    .map(|mode| format!("  ({mode})"))
                    .unwrap_or_default()
            ),
            Err(error) => {
                failures += 1;
                println!("{id}  error: {error}");
            }
        }
    }
    if failures > 0 {
        return Err(format!("{failures} instances failed").into());
    }
    Ok(())
}

fn aws_tag_spec(key: &str, value: &str) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .build()
}

//! Where plugin processes are forked: one thread of the host that lives as long as the host,
//! so that the parent-death signal each plugin gets means "the host is gone", whatever language
//! the plugin is written in.
//!
//! Linux delivers `PR_SET_PDEATHSIG` when the *thread* that forked the child ends, not the
//! process. Forked from a tokio worker or blocking thread, a plugin would be signalled when that
//! thread is retired (a blocking-pool thread after 10 s idle); forked here, only when the whole
//! host ends, `kill -9` included.

use std::io;
use std::sync::Mutex;
use std::sync::mpsc;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The signal a plugin gets when its host dies: catchable, so that a plugin can remove what it
/// made (its socket) before it exits, and fatal to any plugin that does not catch it.
pub(super) const PARENT_DEATH_SIGNAL: Signal = Signal::SIGTERM;

/// One spawn for the spawner thread: the command, the runtime its child is reaped on, and where
/// the result goes.
struct Request {
    command: Command,
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Starts `command` from the spawner thread with the parent-death signal armed; the child is
/// driven (reaped, its pipes read) by the current tokio runtime.
pub(super) async fn spawn(mut command: Command) -> io::Result<Child> {
    arm_parent_death_signal(&mut command);
    let (reply, answer) = oneshot::channel();
    let request = Request {
        command,
        runtime: Handle::current(),
        reply,
    };
    queue()?
        .send(request)
        .map_err(|_| io::Error::other("the plugin spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the plugin spawner thread dropped the request"))?
}

/// The queue of the spawner thread, which is started on first use. The sender lives in a
/// static, so the thread never sees its queue close and never ends before the process does.
fn queue() -> io::Result<mpsc::Sender<Request>> {
    static QUEUE: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let mut queue = QUEUE
        .lock()
        .map_err(|_| io::Error::other("the plugin spawner's queue is poisoned"))?;
    if let Some(sender) = queue.as_ref() {
        return Ok(sender.clone());
    }
    let (sender, requests) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("snoozebot-plugin-spawner".to_owned())
        .spawn(move || {
            for Request {
                mut command,
                runtime,
                reply,
            } in requests
            {
                let _entered = runtime.enter();
                let _ = reply.send(command.spawn());
            }
        })?;
    *queue = Some(sender.clone());
    Ok(sender)
}

/// Asks the kernel to send [`PARENT_DEATH_SIGNAL`] to the child when the spawner thread (that
/// is, the host) ends, and makes the child give up at once if the host already ended between
/// the fork and that request.
#[allow(unsafe_code)]
fn arm_parent_death_signal(command: &mut Command) {
    let host = std::process::id();
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe
    // calls are allowed: it makes two system calls (`prctl`, `getppid`) and builds its errors
    // from raw error numbers, without allocating or taking locks. std runs it after the user
    // and group changes (which would clear the setting), so it survives to the plugin.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL).map_err(io::Error::from)?;
            if nix::unistd::getppid().as_raw().cast_unsigned() != host {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

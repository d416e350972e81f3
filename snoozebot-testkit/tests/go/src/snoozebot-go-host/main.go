// A plugin host built on hashicorp/go-plugin, as a Go service would write one, loading a
// Snoozebot plugin through snoozebot.plugin.v1. Used by tests/go_interop.rs.
//
// Usage: snoozebot-go-host PLUGIN-EXECUTABLE  (AUTO_MTLS=1 for AutoMTLS)
// Prints one line per check and "OK" at the end; exits 1 on the first failure.
//
// With BENCH_CALLS=N it measures instead, the go-plugin baseline for benches/plugin.rs: N
// sequential GetInstance(BENCH_ID) calls after 1000 warm-up calls, then BENCH_COLD loads
// (start -> first answer), and prints one "bench ..." line each.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/snoozebot/snoozebot/proto/snoozebot/plugin/v1"
)

var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "SNOOZEBOT_PLUGIN",
	MagicCookieValue: "snoozebot_plugin_v1",
}

type providerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (providerPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return fmt.Errorf("this program is only a host")
}

func (providerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (interface{}, error) {
	return pb.NewCloudProviderClient(conn), nil
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func newClient(path string, level hclog.Level) *plugin.Client {
	return plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          map[string]plugin.Plugin{"provider": providerPlugin{}},
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         os.Getenv("AUTO_MTLS") == "1",
		Logger:           hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: level}),
	})
}

func dispense(client *plugin.Client) pb.CloudProviderClient {
	rpcClient, err := client.Client()
	if err != nil {
		fail("starting the plugin: %v", err)
	}
	raw, err := rpcClient.Dispense("provider")
	if err != nil {
		fail("dispense: %v", err)
	}
	return raw.(pb.CloudProviderClient)
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func bench(path string, calls int) {
	id := os.Getenv("BENCH_ID")
	request := &pb.GetInstanceRequest{Id: id}
	client := newClient(path, hclog.Error)
	provider := dispense(client)
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if _, err := provider.GetInstance(ctx, request); err != nil {
			fail("GetInstance: %v", err)
		}
	}
	samples := make([]time.Duration, calls)
	started := time.Now()
	for i := range samples {
		t := time.Now()
		if _, err := provider.GetInstance(ctx, request); err != nil {
			fail("GetInstance: %v", err)
		}
		samples[i] = time.Since(t)
	}
	total := time.Since(started)
	// BENCH_CONCURRENCY=N: also N goroutines calling at once, for throughput.
	if concurrency, _ := strconv.Atoi(os.Getenv("BENCH_CONCURRENCY")); concurrency > 1 {
		var wg sync.WaitGroup
		begun := time.Now()
		for g := 0; g < concurrency; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < calls/concurrency; i++ {
					if _, err := provider.GetInstance(ctx, request); err != nil {
						fail("GetInstance: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		fmt.Printf("bench concurrent calls_per_s=%.0f\n", float64(calls/concurrency*concurrency)/time.Since(begun).Seconds())
	}
	client.Kill()
	sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
	fmt.Printf("bench calls p50_us=%.1f p99_us=%.1f calls_per_s=%.0f\n",
		micros(samples[len(samples)/2]), micros(samples[len(samples)*99/100]), float64(calls)/total.Seconds())

	loads, _ := strconv.Atoi(os.Getenv("BENCH_COLD"))
	cold := make([]time.Duration, 0, loads)
	for i := 0; i < loads; i++ {
		t := time.Now()
		client := newClient(path, hclog.Error)
		if _, err := dispense(client).GetInstance(ctx, request); err != nil {
			fail("GetInstance: %v", err)
		}
		cold = append(cold, time.Since(t))
		client.Kill()
	}
	if loads > 0 {
		sort.Slice(cold, func(a, b int) bool { return cold[a] < cold[b] })
		fmt.Printf("bench cold median_ms=%.2f\n", micros(cold[len(cold)/2])/1000)
	}
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: snoozebot-go-host PLUGIN-EXECUTABLE")
	}
	if calls, err := strconv.Atoi(os.Getenv("BENCH_CALLS")); err == nil && calls > 0 {
		bench(os.Args[1], calls)
		return
	}
	client := newClient(os.Args[1], hclog.Info)
	defer client.Kill()

	rpcClient, err := client.Client()
	if err != nil {
		fail("starting the plugin: %v", err)
	}
	if err := rpcClient.Ping(); err != nil {
		fail("health check: %v", err)
	}
	fmt.Println("ping ok")
	raw, err := rpcClient.Dispense("provider")
	if err != nil {
		fail("dispense: %v", err)
	}
	provider := raw.(pb.CloudProviderClient)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	info, err := provider.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		fail("Info: %v", err)
	}
	fmt.Printf("info name=%s modes=%d\n", info.Name, len(info.Capabilities.StopModes))

	idle, err := provider.ListInstances(ctx, &pb.ListInstancesRequest{
		Filter: &pb.InstanceFilter{Tags: map[string]string{"snoozebot": "idle"}},
	})
	if err != nil {
		fail("ListInstances: %v", err)
	}
	fmt.Printf("idle instances=%d\n", len(idle.Instances))

	change, err := provider.StopInstance(ctx, &pb.StopInstanceRequest{Id: idle.Instances[0].Id})
	if err != nil {
		fail("StopInstance: %v", err)
	}
	fmt.Printf("stopped %s %s->%s\n", change.Id, change.Previous, change.Current)

	_, err = provider.GetInstance(ctx, &pb.GetInstanceRequest{Id: "mock-0404"})
	if status.Code(err) != codes.NotFound {
		fail("GetInstance of a missing id: want NotFound, got %v", err)
	}
	fmt.Printf("missing code=%s\n", status.Code(err))

	batch, err := provider.StartInstances(ctx, &pb.StartInstancesRequest{Ids: []string{change.Id, "mock-0404"}})
	if err != nil {
		fail("StartInstances: %v", err)
	}
	fmt.Printf("batch change=%v error=%s\n", batch.Items[0].GetChange() != nil, batch.Items[1].GetError().GetKind())

	client.Kill()
	if !client.Exited() {
		fail("the plugin is still running after Kill")
	}
	fmt.Println("OK")
}

// A Snoozebot plugin written in Go with hashicorp/go-plugin: an in-memory fleet served as
// snoozebot.plugin.v1.CloudProvider. Errors are plain gRPC status codes, as a Go author would
// write them. Used by tests/go_interop.rs.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

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

type instance struct {
	id, name string
	state    pb.InstanceState
	tags     map[string]string
}

type fleet struct {
	pb.UnimplementedCloudProviderServer
	mu        sync.Mutex
	instances map[string]*instance
}

func newFleet(size int) *fleet {
	f := &fleet{instances: map[string]*instance{}}
	for n := 0; n < size; n++ {
		idleness := "busy"
		if n%4 == 0 {
			idleness = "idle"
		}
		id := fmt.Sprintf("go-%04d", n)
		f.instances[id] = &instance{id: id, name: fmt.Sprintf("gonode-%04d", n), state: pb.InstanceState_INSTANCE_STATE_RUNNING, tags: map[string]string{"snoozebot": idleness}}
	}
	return f
}

func rawState(state pb.InstanceState) string {
	return strings.ToLower(strings.TrimPrefix(state.String(), "INSTANCE_STATE_"))
}

func (i *instance) wire() *pb.InstanceInfo {
	name := i.name
	return &pb.InstanceInfo{Id: i.id, Name: &name, State: i.state, RawState: rawState(i.state), BillingStopped: i.state == pb.InstanceState_INSTANCE_STATE_STOPPED, Tags: i.tags}
}

// lookup checks an id the way a real provider would: format first, then existence.
func (f *fleet) lookup(id string) (*instance, error) {
	if !strings.HasPrefix(id, "go-") {
		return nil, status.Errorf(codes.InvalidArgument, "%q is not a go fleet id", id)
	}
	i, ok := f.instances[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "instance %s does not exist", id)
	}
	return i, nil
}

func (f *fleet) Info(context.Context, *pb.InfoRequest) (*pb.ProviderInfo, error) {
	return &pb.ProviderInfo{Name: "go-fleet", Version: "1.0.0", ApiVersion: "go-1", Capabilities: &pb.Capabilities{StopModes: []pb.StopMode{pb.StopMode_STOP_MODE_STOP}}}, nil
}

func (f *fleet) GetInstance(_ context.Context, req *pb.GetInstanceRequest) (*pb.InstanceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.lookup(req.Id)
	if err != nil {
		return nil, err
	}
	return i.wire(), nil
}

func (f *fleet) ListInstances(_ context.Context, req *pb.ListInstancesRequest) (*pb.ListInstancesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	filter := req.GetFilter()
	var ids []string
	for id := range f.instances {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	resp := &pb.ListInstancesResponse{}
	for _, id := range ids {
		i := f.instances[id]
		match := true
		for k, v := range filter.GetTags() {
			if i.tags[k] != v {
				match = false
			}
		}
		if states := filter.GetStates(); len(states) > 0 {
			found := false
			for _, s := range states {
				found = found || s == i.state
			}
			match = match && found
		}
		if filter.NamePrefix != nil && !strings.HasPrefix(i.name, filter.GetNamePrefix()) {
			match = false
		}
		if match {
			resp.Instances = append(resp.Instances, i.wire())
		}
	}
	return resp, nil
}

func (f *fleet) stop(id string, opts *pb.StopOptions) (*pb.StateChange, error) {
	if m := opts.GetMode(); m != pb.StopMode_STOP_MODE_UNSPECIFIED && m != pb.StopMode_STOP_MODE_STOP {
		return nil, status.Errorf(codes.Unimplemented, "stop mode %s is not supported", m)
	}
	if opts.GetDryRun() {
		return nil, status.Error(codes.Unimplemented, "dry runs are not supported")
	}
	i, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	previous := i.state
	if previous == pb.InstanceState_INSTANCE_STATE_RUNNING {
		i.state = pb.InstanceState_INSTANCE_STATE_STOPPED
	}
	return &pb.StateChange{Id: id, Previous: previous, Current: i.state, Mode: pb.StopMode_STOP_MODE_STOP}, nil
}

func (f *fleet) start(id string) (*pb.StateChange, error) {
	i, err := f.lookup(id)
	if err != nil {
		return nil, err
	}
	previous := i.state
	if previous == pb.InstanceState_INSTANCE_STATE_STOPPED {
		i.state = pb.InstanceState_INSTANCE_STATE_RUNNING
	}
	return &pb.StateChange{Id: id, Previous: previous, Current: i.state}, nil
}

func (f *fleet) StopInstance(_ context.Context, req *pb.StopInstanceRequest) (*pb.StateChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stop(req.Id, req.Options)
}

func (f *fleet) StartInstance(_ context.Context, req *pb.StartInstanceRequest) (*pb.StateChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.start(req.Id)
}

func item(id string, change *pb.StateChange, err error) *pb.BatchItem {
	if err != nil {
		kind := "internal"
		switch status.Code(err) {
		case codes.NotFound:
			kind = "not_found"
		case codes.InvalidArgument:
			kind = "invalid_argument"
		case codes.Unimplemented:
			kind = "unsupported"
		}
		return &pb.BatchItem{Id: id, Result: &pb.BatchItem_Error{Error: &pb.ItemError{Kind: kind, Message: status.Convert(err).Message()}}}
	}
	return &pb.BatchItem{Id: id, Result: &pb.BatchItem_Change{Change: change}}
}

func (f *fleet) StopInstances(_ context.Context, req *pb.StopInstancesRequest) (*pb.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.BatchResponse{}
	for _, id := range req.Ids {
		change, err := f.stop(id, req.Options)
		resp.Items = append(resp.Items, item(id, change, err))
	}
	return resp, nil
}

func (f *fleet) StartInstances(_ context.Context, req *pb.StartInstancesRequest) (*pb.BatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &pb.BatchResponse{}
	for _, id := range req.Ids {
		change, err := f.start(id)
		resp.Items = append(resp.Items, item(id, change, err))
	}
	return resp, nil
}

// noBatch answers the batch RPCs as a plugin that leaves them out does (the generated
// UnimplementedCloudProviderServer): codes.Unimplemented. SNOOZEBOT_GO_NO_BATCH=1 serves it.
type noBatch struct{ *fleet }

func (noBatch) StopInstances(context.Context, *pb.StopInstancesRequest) (*pb.BatchResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method StopInstances not implemented")
}

func (noBatch) StartInstances(context.Context, *pb.StartInstancesRequest) (*pb.BatchResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method StartInstances not implemented")
}

type providerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *fleet
}

func (p *providerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if os.Getenv("SNOOZEBOT_GO_NO_BATCH") == "1" {
		pb.RegisterCloudProviderServer(s, noBatch{p.impl})
	} else {
		pb.RegisterCloudProviderServer(s, p.impl)
	}
	return nil
}

func (p *providerPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, fmt.Errorf("this program is only a plugin")
}

// cleanUpOnTerm removes the private temporary directory the host made for the plugin (its
// socket is in it) and exits on SIGTERM: a Snoozebot host sends it to its plugins when it dies,
// and a dead host cannot remove the directory itself (docs/plugin-protocol.md).
func cleanUpOnTerm() {
	terminated := make(chan os.Signal, 1)
	signal.Notify(terminated, syscall.SIGTERM)
	go func() {
		<-terminated
		if dir := os.Getenv("SNOOZEBOT_PLUGIN_TMPDIR"); strings.HasPrefix(filepath.Base(dir), "snoozebot-host-") {
			os.RemoveAll(dir)
		}
		os.Exit(0)
	}()
}

func main() {
	// SNOOZEBOT_GO_NO_CLEANUP: a plugin that only serves, as go-plugin's examples do.
	if os.Getenv("SNOOZEBOT_GO_NO_CLEANUP") == "" {
		cleanUpOnTerm()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         map[string]plugin.Plugin{"provider": &providerPlugin{impl: newFleet(8)}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

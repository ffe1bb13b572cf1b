// A Go client of gitpod-sim, built from Debian's Go packages in GOPATH mode (tests/test_go_client.py):
// a lifecycle steered through the control plane on a manual clock, a fault, and the error codes.
// Usage: lifecycle ADDRESS API_TOKEN ADMIN_TOKEN; prints one JSON object of what it saw.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	v1 "github.com/gitpod-io/gitpod/public-api/v1"
	simulatorv1 "github.com/gitpod-sim/gitpod-sim/gen/gitpod/simulator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

type result struct {
	WorkspaceID  string            `json:"workspaceId"`
	Streamed     []string          `json:"streamed"`
	Advanced     []string          `json:"advanced"`
	StopMessages int               `json:"stopMessages"`
	Faulted      []string          `json:"faulted"`
	Errors       map[string]string `json:"errors"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func code(err error) string {
	if err == nil {
		return "OK"
	}
	s := status.Convert(err)
	return s.Code().String() + ": " + s.Message()
}

// advanceUntil moves simulated time one event at a time until an instance reaches phase.
func advanceUntil(ctx context.Context, sim simulatorv1.SimulatorServiceClient, phase v1.WorkspaceInstanceStatus_Phase) []string {
	var seen []string
	for i := 0; i < 50; i++ {
		resp, err := sim.Advance(ctx, &simulatorv1.AdvanceRequest{How: &simulatorv1.AdvanceRequest_ToNextEvent{ToNextEvent: true}})
		must(err)
		for _, t := range resp.Transitions {
			seen = append(seen, fmt.Sprintf("%s->%s (%s)", t.FromPhase, t.ToPhase, t.Cause))
			if t.ToPhase == phase {
				return seen
			}
		}
	}
	must(fmt.Errorf("no %s after 50 events: %v", phase, seen))
	return nil
}

// failNextStart is the README's Go example: fail the next start's image pull, start the
// workspace again and move the clock until nothing is scheduled.
func failNextStart(conn *grpc.ClientConn, api v1.WorkspacesServiceClient, user context.Context, workspaceID, adminToken string) []*simulatorv1.Transition {
	// README:begin
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminToken)
	sim := simulatorv1.NewSimulatorServiceClient(conn)
	if _, err := sim.AddFault(ctx, &simulatorv1.AddFaultRequest{Spec: &simulatorv1.FaultSpec{
		Target: &simulatorv1.FaultTarget{Target: &simulatorv1.FaultTarget_NextStart{NextStart: true}},
		Count:  1,
		Kind:   &simulatorv1.FaultSpec_FailCreating{FailCreating: &simulatorv1.FailCreating{Reason: "image pull failed"}}}}); err != nil {
		log.Fatal(err)
	}
	if _, err := api.StartWorkspace(user, &v1.StartWorkspaceRequest{WorkspaceId: workspaceID}); err != nil {
		log.Fatal(err)
	}
	resp, err := sim.Advance(ctx, &simulatorv1.AdvanceRequest{How: &simulatorv1.AdvanceRequest_UntilIdle{UntilIdle: durationpb.New(time.Hour)}})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range resp.Transitions {
		fmt.Println(t.InstanceId, t.FromPhase, "->", t.ToPhase, t.Cause)
	}
	// README:end
	return resp.Transitions
}

func main() {
	address, apiToken, adminToken := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure(), grpc.WithBlock())
	must(err)
	defer conn.Close()
	out := result{Errors: map[string]string{}}
	api := v1.NewWorkspacesServiceClient(conn)
	user := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiToken)
	admin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	sim := simulatorv1.NewSimulatorServiceClient(conn)

	// Created, followed on the stream while the control plane moves the clock, to RUNNING.
	ws, err := api.CreateAndStartWorkspace(user, &v1.CreateAndStartWorkspaceRequest{
		Source: &v1.CreateAndStartWorkspaceRequest_ContextUrl{ContextUrl: "https://github.com/gitpod-io/gitpod"}})
	must(err)
	out.WorkspaceID = ws.WorkspaceId
	active, err := api.GetActiveWorkspaceInstance(user, &v1.GetActiveWorkspaceInstanceRequest{WorkspaceId: ws.WorkspaceId})
	must(err)
	listen, err := api.ListenToWorkspaceInstance(user, &v1.ListenToWorkspaceInstanceRequest{InstanceId: active.Instance.InstanceId})
	must(err)
	first, err := listen.Recv() // the current status: the stream is open before time moves
	must(err)
	out.Streamed = append(out.Streamed, first.InstanceStatus.Phase.String())
	out.Advanced = advanceUntil(admin, sim, v1.WorkspaceInstanceStatus_PHASE_RUNNING)
	for out.Streamed[len(out.Streamed)-1] != "PHASE_RUNNING" {
		update, err := listen.Recv()
		must(err)
		out.Streamed = append(out.Streamed, update.InstanceStatus.Phase.String())
	}

	// Stopped: the stop stream sends one message per phase change (STOPPING, STOPPED).
	stop, err := api.StopWorkspace(user, &v1.StopWorkspaceRequest{WorkspaceId: ws.WorkspaceId})
	must(err)
	_, err = stop.Header() // the call is accepted before the clock moves on
	must(err)
	advanceUntil(admin, sim, v1.WorkspaceInstanceStatus_PHASE_STOPPED)
	for {
		if _, err := stop.Recv(); err == io.EOF {
			break
		} else {
			must(err)
		}
		out.StopMessages++
	}

	for _, t := range failNextStart(conn, api, user, ws.WorkspaceId, adminToken) {
		out.Faulted = append(out.Faulted, fmt.Sprintf("%s->%s (%s)", t.FromPhase, t.ToPhase, t.Cause))
	}

	// Error codes a client must handle.
	_, err = api.GetWorkspace(user, &v1.GetWorkspaceRequest{WorkspaceId: "gitpodio-gitpod-zzzzzzzzzzz"})
	out.Errors["unknownWorkspace"] = code(err)
	_, err = api.GetWorkspace(user, &v1.GetWorkspaceRequest{WorkspaceId: "not an id"})
	out.Errors["invalidId"] = code(err)
	_, err = api.ListWorkspaces(admin, &v1.ListWorkspacesRequest{}) // the admin token on the API
	out.Errors["adminOnApi"] = code(err)
	_, err = api.ListWorkspaces(context.Background(), &v1.ListWorkspacesRequest{})
	out.Errors["noToken"] = code(err)
	_, err = sim.GetClock(user, &simulatorv1.GetClockRequest{})
	out.Errors["apiTokenOnControl"] = code(err)
	_, err = api.ListWorkspaces(user, &v1.ListWorkspacesRequest{Pagination: &v1.Pagination{PageSize: 101}})
	out.Errors["pageSize"] = code(err)
	stopAgain, err := api.StopWorkspace(user, &v1.StopWorkspaceRequest{WorkspaceId: ws.WorkspaceId})
	if err == nil {
		_, err = stopAgain.Recv()
	}
	out.Errors["stopStopped"] = code(err)

	must(json.NewEncoder(os.Stdout).Encode(out))
}

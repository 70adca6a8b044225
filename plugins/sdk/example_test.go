package sdk_test

import (
	"context"
	"fmt"

	"github.com/rotary-secrets/rotary/events"
	"github.com/rotary-secrets/rotary/plugins/proto"
	"github.com/rotary-secrets/rotary/plugins/sdk"
)

// A hook plugin's main is sdk.ServeHook(h); here the hook is called as
// the host would, through its gRPC service, without a process.
func ExampleHookFunc() {
	h := sdk.HookFunc(func(_ context.Context, e events.Event) error {
		fmt.Printf("%s %s v%d (%s)\n", e.Event, e.Secret, e.Version, e.Reason)
		return nil
	})
	// In a plugin: func main() { sdk.ServeHook(h) }
	srv := sdk.NewHookServer(h, nil, sdk.Info{Name: "printer"}, nil)
	event := []byte(`{"event":"rotated","secret":"db/main","version":7,"reason":"scheduled","at":"2026-12-02T20:00:00Z"}`)
	if _, err := srv.OnEvent(context.Background(), &proto.Event{Json: event}); err != nil {
		fmt.Println(err)
	}
	// Output: rotated db/main v7 (scheduled)
}

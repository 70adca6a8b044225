// Command rabbitmq is a rotator plugin for RabbitMQ users: it changes a
// user's password through RabbitMQ's management HTTP API (strategies admin
// and alternating) and tests it with a real AMQP login. See package rabbit
// for what it does on the broker. Build it with `make plugins` and
// register bin/plugins/rabbitmq as plugin:rabbitmq.
package main

import (
	"encoding/json"

	"github.com/rotary-secrets/rotary/plugins/examples/rabbitmq/rabbit"
	"github.com/rotary-secrets/rotary/plugins/sdk"
)

func main() {
	sdk.Serve(sdk.Config{
		Rotator: rabbit.New(),
		Info: sdk.Info{
			Name: rabbit.Name, Version: rabbit.Version, SecretTypes: rabbit.SecretTypes,
			ConfigExample: json.RawMessage(rabbit.ConfigExample), IdentityFields: rabbit.IdentityFields,
		},
	})
}

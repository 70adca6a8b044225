// Command template is the smallest complete rotator plugin, the starting
// point to copy: it rotates the password of a basic-auth secret
// ({"username","password"}) in a file-backed account store (see package
// rotator), standing in for the system a real plugin would talk to.
package main

import (
	"github.com/rotary-secrets/rotary/plugins/examples/template/rotator"
	"github.com/rotary-secrets/rotary/plugins/sdk"
)

func main() { sdk.ServeRotator(rotator.Rotator{}) }

package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version and commit are set at build time (make build):
//
//	go build -ldflags "-X main.version=$(git describe --always --dirty) -X main.commit=$(git rev-parse HEAD)"
//
// Without them the module version and the VCS settings Go records in the
// binary are used, and "dev" when there are none.
var version, commit string

// buildVersion returns the version and commit of this binary.
func buildVersion() (ver, rev string) {
	ver, rev = version, commit
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return cmp.Or(ver, "dev"), cmp.Or(rev, "unknown")
	}
	if ver == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		ver = bi.Main.Version // go install module@version
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if rev == "" {
				rev = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if ver == "" {
		ver = "dev"
		if rev != "" {
			ver = "dev-" + rev[:min(12, len(rev))]
			if modified {
				ver += "-dirty"
			}
		}
	}
	return ver, cmp.Or(rev, "unknown")
}

// versionLine is what `rotary version` and `rotary --version` print.
func versionLine() string {
	ver, rev := buildVersion()
	return fmt.Sprintf("rotary %s (commit %s, %s, %s/%s)", ver, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version and commit of this build",
		Example: "  rotary version\n  rotary version -o json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if a.json() {
				ver, rev := buildVersion()
				return printJSON(a.stdout, map[string]string{"version": ver, "commit": rev,
					"go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH})
			}
			_, err := fmt.Fprintln(a.stdout, versionLine())
			return err
		},
	}
}

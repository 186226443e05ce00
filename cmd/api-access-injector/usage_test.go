package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/api-access-injector/api-access-injector/internal/version"
)

// TestHelpAndVersion runs the command line as a newcomer does first: --version, and --help
// of each command, whose flags are listed as --flag (the standard library lists -flag).
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		stdout, stderr, code := command(t, "", args...)
		if diff := cmp.Diff(struct {
			Out, Err string
			Code     int
		}{version.Get() + "\n", "", 0}, struct {
			Out, Err string
			Code     int
		}{stdout, stderr, code}); diff != "" {
			t.Errorf("%v (-want +got):\n%s", args, diff)
		}
	}
	singleDash := regexp.MustCompile(`(?m)^\s+-[a-z]{2,}`)
	for _, tc := range []struct {
		cmd  string
		flag string
	}{{"webhook", "--cert-dir"}, {"inject", "--namespace-injection"}, {"explain", "--webhook-config"}, {"rbac", "--timeout"}} {
		t.Run(tc.cmd, func(t *testing.T) {
			stdout, stderr, code := command(t, "", tc.cmd, "--help")
			help := stdout + stderr
			if code != 0 || !strings.Contains(help, "\n  "+tc.flag+" ") || singleDash.MatchString(help) {
				t.Errorf("%s --help: exit %d, want 0 and flags listed as --flag like %s:\n%s", tc.cmd, code, tc.flag, help)
			}
		})
	}
}

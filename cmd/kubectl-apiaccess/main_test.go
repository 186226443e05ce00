package main

import (
	"errors"
	"testing"

	"github.com/api-access-injector/api-access-injector/internal/explain"
)

// TestRun checks the plugin's dispatch: version, help, and a usage error for anything else.
// What explain itself does is tested in internal/explain against a real API server.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"version"}, nil},
		{[]string{"--help"}, nil},
		{[]string{"explain", "--help"}, nil},
		{nil, explain.ErrUsage},
		{[]string{"inject"}, explain.ErrUsage},
		{[]string{"explain", "-o", "yaml", "pod/x"}, explain.ErrUsage},
		{[]string{"explain"}, explain.ErrUsage},
		{[]string{"rbac", "--help"}, nil},
		{[]string{"rbac"}, explain.ErrUsage},
		{[]string{"rbac", "-o", "table", "pod/x"}, explain.ErrUsage},
		{[]string{"rbac", "-f", "x.json", "pod/x"}, explain.ErrUsage},
	} {
		if err := run(t.Context(), tc.args); !errors.Is(err, tc.want) {
			t.Errorf("kubectl apiaccess %v: %v, want %v", tc.args, err, tc.want)
		}
	}
}

package proxy

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryFiles hold the memory limit of the container the process runs in: cgroup v2,
// then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// softLimitShare is the part of the container's memory limit that the Go runtime's soft
// memory limit is set to. The rest is for what the runtime does not count: the binary's
// mapped pages and the kernel's accounting of them.
const softLimitShare = 0.75

// setSoftMemoryLimit sets the Go runtime's soft memory limit to softLimitShare of the
// container's memory limit, unless GOMEMLIMIT sets one. Without it the garbage collector lets
// the heap grow to twice what is live before it runs, so a burst that keeps 30 MiB live
// reaches the default 64Mi limit and the kubelet kills the sidecar; with it the collector runs
// as the heap approaches the limit (https://go.dev/doc/gc-guide#Memory_limit). It returns the
// limit set, 0 if none.
func setSoftMemoryLimit(log *slog.Logger, files []string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	for _, f := range files {
		limit, ok := readCgroupLimit(f)
		if !ok {
			continue
		}
		soft := int64(float64(limit) * softLimitShare)
		debug.SetMemoryLimit(soft)
		log.Info("soft memory limit set from the container's memory limit", "limit", limit, "softLimit", soft, "file", f)
		return soft
	}
	return 0
}

// readCgroupLimit reads a cgroup memory limit file; ok is false when the file is missing or
// sets no limit ("max", or cgroup v1's page-rounded maximum).
func readCgroupLimit(file string) (limit int64, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}

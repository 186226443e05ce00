package materialize

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// The pod view: clients that read the in-cluster paths, which no flag or variable moves
// (/var/run/secrets/kubernetes.io/serviceaccount, and /etc/hosts for the pod's hostAliases), run
// in a private mount namespace where the container's volumes are mounted at their paths and
// /etc/hosts is the one the kubelet would write. Nothing is remapped then: the process sees the
// paths of its container's spec. The mounts exist in that namespace only; a path whose parent
// does not exist on this machine is made in an overlay over its nearest existing ancestor, with
// the overlay's writable layer under Root, so this machine's own directories stay untouched.
// It needs root (as a kubelet does): mount namespaces and bind mounts are privileged.

// MountEnvVar carries, to the caller's executable re-executed in a private mount namespace,
// the mounts to make and the program to execute then (see IsMounter and MounterMain).
const MountEnvVar = "APIACCESS_MATERIALIZE_PODVIEW"

// podView is what MounterMain does before it executes Argv.
type podView struct {
	Binds   []bind   `json:"binds"`
	Hosts   string   `json:"hosts"`   // a file to bind over /etc/hosts
	Scratch string   `json:"scratch"` // a directory for the overlays' layers
	Argv    []string `json:"argv"`
}

// bind mounts the directory Source at Target.
type bind struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly"`
}

// IsMounter reports whether this process was started to set up a pod view (see MounterMain).
func IsMounter() bool { return os.Getenv(MountEnvVar) != "" }

// MounterMain sets up the pod view described by MountEnvVar in this process's private mount
// namespace and executes the container's program in it; it returns only on failure, with the
// exit code. Call it from main (or TestMain) when IsMounter, as AppMain when IsApp.
func MounterMain() int {
	var v podView
	if err := json.Unmarshal([]byte(os.Getenv(MountEnvVar)), &v); err != nil || len(v.Argv) == 0 {
		fmt.Fprintf(os.Stderr, "materialize: pod view: bad %s: %v\n", MountEnvVar, err)
		return 127
	}
	if err := v.mount(); err != nil {
		fmt.Fprintf(os.Stderr, "materialize: pod view: %v\n", err)
		return 127
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, MountEnvVar+"=") })
	path, err := exec.LookPath(v.Argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "materialize: pod view: %v\n", err)
		return 127
	}
	err = syscall.Exec(path, v.Argv, env)
	fmt.Fprintf(os.Stderr, "materialize: pod view: executing %s: %v\n", path, err)
	return 127
}

// mount makes the binds and the hosts file, in this process's (private) mount namespace.
func (v podView) mount() error {
	overlaid := map[string]bool{}
	for _, b := range v.Binds {
		target, missing, err := resolve(b.Target)
		if err != nil {
			return err
		}
		if missing != "" {
			// An overlay over the nearest existing ancestor takes the new directories.
			anc := strings.TrimSuffix(target, missing)
			if anc == "/" || anc == "" {
				return fmt.Errorf("mount path %s: no parent but / exists here, and / is not overlaid", b.Target)
			}
			if !overlaid[anc] {
				layer := filepath.Join(v.Scratch, strconv.Itoa(len(overlaid)))
				upper, work := filepath.Join(layer, "upper"), filepath.Join(layer, "work")
				if err := errors.Join(os.MkdirAll(upper, 0o755), os.MkdirAll(work, 0o755)); err != nil {
					return err
				}
				opts := "lowerdir=" + anc + ",upperdir=" + upper + ",workdir=" + work
				if err := syscall.Mount("overlay", anc, "overlay", 0, opts); err != nil {
					return fmt.Errorf("overlay on %s: %w", anc, err)
				}
				overlaid[anc] = true
			}
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		}
		if err := syscall.Mount(b.Source, target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.Source, target, err)
		}
		if b.ReadOnly {
			if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("read-only %s: %w", target, err)
			}
		}
	}
	if v.Hosts != "" {
		if err := syscall.Mount(v.Hosts, "/etc/hosts", "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on /etc/hosts: %w", v.Hosts, err)
		}
	}
	return nil
}

// resolve returns p with the symbolic links of its existing part resolved (/var/run is /run on
// most machines), and the part of it that does not exist yet ("" when all of it does).
func resolve(p string) (target, missing string, err error) {
	p = filepath.Clean(p)
	existing := p
	for {
		if _, err := os.Lstat(existing); err == nil {
			break
		}
		existing = filepath.Dir(existing)
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", "", err
	}
	missing = strings.TrimPrefix(p, existing)
	return resolved + missing, missing, nil
}

// podViewFor describes the pod view of a container: its volume mounts at their paths, and
// /etc/hosts as the kubelet writes it, with the pod's hostAliases, written into home.
func (k *Kubelet) podViewFor(c *corev1.Container, home string, lookup func(string) (string, bool)) (*podView, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the pod view (ProcessOptions.PodView) needs root: it makes a mount namespace and bind mounts, as a kubelet does")
	}
	v := &podView{Scratch: filepath.Join(k.Root, "podview", c.Name)}
	for _, m := range c.VolumeMounts {
		dir := k.VolumeDir(m.Name)
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, lookup)
		}
		if sub != "" {
			dir = filepath.Join(dir, filepath.Clean("/"+sub))
		}
		v.Binds = append(v.Binds, bind{Source: dir, Target: m.MountPath, ReadOnly: m.ReadOnly})
	}
	// The kubelet's managed /etc/hosts: localhost, then the hostAliases
	// (https://kubernetes.io/docs/tasks/network/customize-hosts-file-for-pods/).
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if len(k.Pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range k.Pod.Spec.HostAliases {
			b.WriteString(a.IP + "\t" + strings.Join(a.Hostnames, "\t") + "\n")
		}
	}
	v.Hosts = filepath.Join(home, "etc-hosts")
	if err := os.WriteFile(v.Hosts, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return v, nil
}

// command returns the exec.Cmd that runs p: directly, or, for a pod view, as the caller's
// executable re-executed in a new mount namespace (see MounterMain).
func (p *Process) command(ctx context.Context) (*exec.Cmd, error) {
	if p.podView == nil {
		cmd := exec.CommandContext(ctx, p.Argv[0], p.Argv[1:]...)
		cmd.Env, cmd.Dir = p.Env, p.Dir
		return cmd, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	v := *p.podView
	v.Argv = p.Argv
	spec, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env, cmd.Dir = append(slices.Clone(p.Env), MountEnvVar+"="+string(spec)), p.Dir
	// Go makes the new namespace's mounts private before it executes the child, so that
	// nothing mounted there propagates back to this machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

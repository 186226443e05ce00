package materialize

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// defaultPath is what container runtimes set as PATH when the image sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Process is what a container runtime would execute for one container.
type Process struct {
	// Container is the container's name.
	Container string
	// Argv is the command line; Argv[0] is the program.
	Argv []string
	// Env is the environment, KEY=value, in the order the kubelet builds it.
	Env []string
	// Dir is the working directory.
	Dir string

	// programs maps the names of programs in the image to local binaries (exec probes).
	programs map[string]string
	// podView, when set, runs the process in a mount namespace of its own (see podview.go).
	podView *podView
}

// Getenv returns the value of an environment variable of the process.
func (p *Process) Getenv(key string) (string, bool) {
	for _, v := range slices.Backward(p.Env) {
		if k, v, _ := strings.Cut(v, "="); k == key {
			return v, true
		}
	}
	return "", false
}

// ProcessOptions stand in for what the image would provide.
type ProcessOptions struct {
	// Entrypoint stands in for the image's entrypoint: used, followed by the container's
	// args, when the container sets no command. A container that sets neither gets an error.
	Entrypoint []string
	// Argv, when set, replaces the container's command and args altogether: the image's
	// program cannot run here, so the caller runs its own with the container's environment.
	Argv []string
	// ImplicitPathFlags maps a flag name (without dashes) to a path the program reads by
	// default. When the container mounts a volume over that path and its args do not set the
	// flag, --flag=<remapped path> is appended, since the default path does not exist here.
	ImplicitPathFlags map[string]string
	// Programs maps the name of a program in the image, as a container's command or an exec
	// probe names it (kubectl), to a local binary run in its place.
	Programs map[string]string
	// InClusterConfig stands in for client-go's in-cluster configuration, which reads the
	// service-account files at a fixed path that no flag moves (kubectl proxy in the kubectl
	// image does): KUBECONFIG is set to a file naming what it would read there, the API
	// server of KUBERNETES_SERVICE_HOST/PORT with the token file and CA of the container's
	// remapped service-account mount.
	InClusterConfig bool
	// PodView runs the process as the container would see the file system: its volumes
	// mounted at their mount paths, and /etc/hosts with the pod's hostAliases, in a mount
	// namespace of its own (see podview.go), instead of remapping paths. For clients that read
	// paths no flag moves, such as the in-cluster service-account files. Needs root, and the
	// caller's executable must call MounterMain when IsMounter.
	PodView bool
}

// inClusterDir is where client-go's in-cluster configuration reads token, ca.crt and namespace.
const inClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Process builds the process of a container: argv with $(VAR) references expanded, the
// environment the kubelet would give it, and every path under a volumeMount remapped to the
// volume's directory under Root (see the package documentation).
func (k *Kubelet) Process(ctx context.Context, container string, o ProcessOptions) (*Process, error) {
	c, err := k.container(container)
	if err != nil {
		return nil, err
	}
	env, err := k.env(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("materialize: container %q: %w", container, err)
	}
	lookup := envLookup(env)
	var argv []string
	switch {
	case len(o.Argv) > 0:
		argv = slices.Clone(o.Argv)
	case len(c.Command) > 0:
		argv = expandAll(slices.Concat(c.Command, c.Args), lookup)
		if prog, ok := o.Programs[argv[0]]; ok {
			argv[0] = prog
		}
	case len(o.Entrypoint) > 0:
		argv = slices.Concat(o.Entrypoint, expandAll(c.Args, lookup))
	default:
		return nil, fmt.Errorf("materialize: container %q sets no command and no entrypoint stands in for its image's", container)
	}
	rm, err := k.remapper(c, lookup)
	if err != nil {
		return nil, fmt.Errorf("materialize: container %q: %w", container, err)
	}
	if o.PodView {
		rm = remapper{} // the paths are real in the pod view
	}
	for i := 1; i < len(argv); i++ {
		argv[i] = rm.arg(argv[i])
	}
	for _, name := range sortedKeys(o.ImplicitPathFlags) {
		if setsFlag(argv[1:], name) {
			continue
		}
		def := o.ImplicitPathFlags[name]
		if p, ok := rm.path(def); ok {
			argv = append(argv, "--"+name+"="+p)
		}
	}
	home := k.homeDir(container)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	// As a container runtime does when the image sets neither.
	out := []string{"PATH=" + defaultPath, "HOME=" + home}
	for _, e := range env {
		out = append(out, e.Name+"="+rm.arg(e.Value))
	}
	if o.InClusterConfig {
		path, err := k.inClusterKubeconfig(home, rm)
		if err != nil {
			return nil, fmt.Errorf("materialize: container %q: %w", container, err)
		}
		out = append(out, "KUBECONFIG="+path)
	}
	dir := home
	if c.WorkingDir != "" {
		if p, ok := rm.path(c.WorkingDir); ok {
			dir = p
		}
	}
	p := &Process{Container: container, Argv: argv, Env: out, Dir: dir, programs: o.Programs}
	if o.PodView {
		if p.podView, err = k.podViewFor(c, home, lookup); err != nil {
			return nil, fmt.Errorf("materialize: container %q: %w", container, err)
		}
	}
	return p, nil
}

// inClusterKubeconfig writes into home a kubeconfig equivalent to what rest.InClusterConfig
// builds from the container's service-account mount, and returns its path.
func (k *Kubelet) inClusterKubeconfig(home string, rm remapper) (string, error) {
	dir, ok := rm.path(inClusterDir)
	if !ok {
		return "", fmt.Errorf("in-cluster config: the container mounts nothing at %s", inClusterDir)
	}
	ns, err := os.ReadFile(filepath.Join(dir, "namespace"))
	if err != nil {
		return "", fmt.Errorf("in-cluster config: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["in-cluster"] = &clientcmdapi.Cluster{
		Server:               "https://" + net.JoinHostPort(k.serviceHost, k.servicePort),
		CertificateAuthority: filepath.Join(dir, "ca.crt"),
	}
	// A token file, as rest.InClusterConfig uses, so that rotated tokens are re-read.
	cfg.AuthInfos["in-cluster"] = &clientcmdapi.AuthInfo{TokenFile: filepath.Join(dir, "token")}
	cfg.Contexts["in-cluster"] = &clientcmdapi.Context{Cluster: "in-cluster", AuthInfo: "in-cluster", Namespace: string(ns)}
	cfg.CurrentContext = "in-cluster"
	path := filepath.Join(home, "in-cluster.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("in-cluster config: %w", err)
	}
	return path, nil
}

// env builds a container's environment as the kubelet's makeEnvironmentVariables does: the
// kubernetes Service's variables first, then envFrom, then env, later entries winning, each
// value expanded against the variables defined before it.
func (k *Kubelet) env(ctx context.Context, c *corev1.Container) ([]corev1.EnvVar, error) {
	var env []corev1.EnvVar
	set := func(name, value string) {
		env = slices.DeleteFunc(env, func(e corev1.EnvVar) bool { return e.Name == name })
		env = append(env, corev1.EnvVar{Name: name, Value: value})
	}
	for _, e := range k.serviceEnv() {
		set(e.Name, e.Value)
	}
	for _, from := range c.EnvFrom {
		data, err := k.envFromData(ctx, from)
		if err != nil {
			return nil, err
		}
		for _, key := range sortedKeys(data) {
			set(from.Prefix+key, data[key])
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, envLookup(env)))
			continue
		}
		v, ok, err := k.envValueFrom(ctx, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return env, nil
}

func (k *Kubelet) envFromData(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	data := map[string]string{}
	switch {
	case from.ConfigMapRef != nil:
		cm, err := k.client.CoreV1().ConfigMaps(k.Pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if err != nil {
			if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				return data, nil
			}
			return nil, fmt.Errorf("envFrom ConfigMap %s: %w", from.ConfigMapRef.Name, err)
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		s, err := k.client.CoreV1().Secrets(k.Pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if err != nil {
			if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
				return data, nil
			}
			return nil, fmt.Errorf("envFrom Secret %s: %w", from.SecretRef.Name, err)
		}
		for key, v := range s.Data {
			data[key] = string(v)
		}
		return data, nil
	}
	return nil, fmt.Errorf("envFrom: only configMapRef and secretRef are supported")
}

// envValueFrom resolves a valueFrom; ok is false when an optional source is missing.
func (k *Kubelet) envValueFrom(ctx context.Context, e corev1.EnvVar) (string, bool, error) {
	f := e.ValueFrom
	switch {
	case f.FieldRef != nil:
		v, err := podField(k.Pod, f.FieldRef.FieldPath, true)
		return v, err == nil, err
	case f.ConfigMapKeyRef != nil:
		r := f.ConfigMapKeyRef
		optional := r.Optional != nil && *r.Optional
		cm, err := k.client.CoreV1().ConfigMaps(k.Pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if optional {
				return "", false, nil
			}
			return "", false, fmt.Errorf("ConfigMap %s: %w", r.Name, err)
		}
		v, ok := cm.Data[r.Key]
		if !ok && !optional {
			return "", false, fmt.Errorf("ConfigMap %s has no key %q", r.Name, r.Key)
		}
		return v, ok, nil
	case f.SecretKeyRef != nil:
		r := f.SecretKeyRef
		optional := r.Optional != nil && *r.Optional
		s, err := k.client.CoreV1().Secrets(k.Pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			if optional {
				return "", false, nil
			}
			return "", false, fmt.Errorf("secret %s: %w", r.Name, err)
		}
		v, ok := s.Data[r.Key]
		if !ok && !optional {
			return "", false, fmt.Errorf("secret %s has no key %q", r.Name, r.Key)
		}
		return string(v), ok, nil
	}
	return "", false, fmt.Errorf("only fieldRef, configMapKeyRef and secretKeyRef are supported")
}

// remapper rewrites paths under a container's mounts to the volumes' directories.
type remapper struct {
	mounts []mountDir // longest mount path first
}

type mountDir struct {
	path, dir string
}

func (k *Kubelet) remapper(c *corev1.Container, lookup func(string) (string, bool)) (remapper, error) {
	var r remapper
	for _, m := range c.VolumeMounts {
		dir := k.VolumeDir(m.Name)
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, lookup)
		}
		if sub != "" {
			clean := filepath.Clean(sub)
			if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return r, fmt.Errorf("volumeMount %s: subPath %q leaves the volume", m.Name, sub)
			}
			dir = filepath.Join(dir, clean)
		}
		r.mounts = append(r.mounts, mountDir{path: filepath.Clean(m.MountPath), dir: dir})
	}
	slices.SortStableFunc(r.mounts, func(a, b mountDir) int { return len(b.path) - len(a.path) })
	return r, nil
}

// path remaps p when it is a mount path or below one.
func (r remapper) path(p string) (string, bool) {
	for _, m := range r.mounts {
		if p == m.path {
			return m.dir, true
		}
		if rest, ok := strings.CutPrefix(p, m.path+"/"); ok {
			return m.dir + "/" + rest, true
		}
	}
	return p, false
}

// arg remaps a value that is a path, or a --flag=path argument.
func (r remapper) arg(s string) string {
	if p, ok := r.path(s); ok {
		return p
	}
	if strings.HasPrefix(s, "-") {
		if name, v, ok := strings.Cut(s, "="); ok {
			if p, ok := r.path(v); ok {
				return name + "=" + p
			}
		}
	}
	return s
}

// setsFlag reports whether args set the flag name in any of Go's or pflag's spellings.
func setsFlag(args []string, name string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p || strings.HasPrefix(a, p+"=") {
				return true
			}
		}
		return false
	})
}

func envLookup(env []corev1.EnvVar) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, e := range slices.Backward(env) {
			if e.Name == name {
				return e.Value, true
			}
		}
		return "", false
	}
}

func expandAll(ss []string, lookup func(string) (string, bool)) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = expand(s, lookup)
	}
	return out
}

// expand replaces $(VAR) references as the kubelet does: a defined variable is substituted,
// an undefined reference is kept as written, and $$ escapes a $.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 { // unterminated: kept as written
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

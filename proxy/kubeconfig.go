package proxy

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/api-access-injector/api-access-injector/proxy/proxyargs"
)

// The kubeconfig of the app containers is written by api-proxy itself, into a memory-backed
// emptyDir volume that the app containers mount read-only, rather than projected from a pod
// annotation: a downward-API file stays live, so whoever may patch the pod could rewrite what
// kubectl and client-go load inside the app (another server, or a users[].exec plugin that
// they would run). What api-proxy writes comes only from its own arguments and the pod's
// namespace, and neither can change after admission.

// KubeconfigCommand is the subcommand (`api-proxy write-kubeconfig`) that writes the
// kubeconfig and exits, without serving: the kubeconfig init container that the injector adds
// when the sidecar is `kubectl proxy`, whose image has no way to write it.
const KubeconfigCommand = proxyargs.WriteKubeconfig

// KubeconfigFileMode lets the app containers read the kubeconfig whatever user they run as.
// It holds no secret: the proxy adds the credentials.
const KubeconfigFileMode os.FileMode = 0o644

// kubeconfigName names the kubeconfig's only cluster, user and context.
const kubeconfigName = "api-proxy"

// namespaceRE is a DNS-1123 label, the syntax of a namespace name.
var namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Kubeconfig returns the kubeconfig that points kubectl and client libraries at the proxy:
// one cluster, server (such as http://127.0.0.1:8001), an empty user (the proxy adds the
// credentials), and a context whose namespace is namespace. It is written with the standard
// library, to keep the binary lean; tests load it back with client-go's clientcmd.
func Kubeconfig(server, namespace string) ([]byte, error) {
	if len(namespace) > 63 || !namespaceRE.MatchString(namespace) {
		return nil, fmt.Errorf("namespace %q is not a namespace name: want a DNS-1123 label "+
			"(at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit)", namespace)
	}
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		return nil, fmt.Errorf("server %q: want an http:// or https:// URL", server)
	}
	// A JSON string is a valid YAML double-quoted scalar, so quoting cannot go wrong.
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return []byte(`# Written by api-proxy when it started. Its only cluster is the api-proxy sidecar on this
# pod's loopback, which adds the pod's credentials. Nothing that can change after admission feeds it.
apiVersion: v1
kind: Config
clusters:
- name: ` + kubeconfigName + `
  cluster:
    server: ` + q(server) + `
users:
- name: ` + kubeconfigName + `
  user: {}
contexts:
- name: ` + kubeconfigName + `
  context:
    cluster: ` + kubeconfigName + `
    user: ` + kubeconfigName + `
    namespace: ` + q(namespace) + `
current-context: ` + kubeconfigName + `
`), nil
}

// WriteKubeconfig writes Kubeconfig(server, namespace) to path with mode KubeconfigFileMode,
// atomically: a reader sees the previous file or the whole new one, never a partial one (the
// sidecar rewrites it on every restart while the app may be reading it).
func WriteKubeconfig(path, server, namespace string) error {
	content, err := Kubeconfig(server, namespace)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, content, KubeconfigFileMode); err != nil {
		return fmt.Errorf("writing the kubeconfig %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes a temporary file beside path and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; Chmod is not filtered by the umask.
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// writeKubeconfig writes --kubeconfig-out, when set, naming the API listener bound by Listen
// and the namespace read from --serviceaccount-dir (the downward API's metadata.namespace,
// which cannot change). Run calls it before it serves, so the health port reports ready only
// once the file exists, and the kubelet starts the app containers only after that.
func (s *Server) writeKubeconfig() error {
	if s.cfg.KubeconfigOut == "" {
		return nil
	}
	nsFile := filepath.Join(s.cfg.ServiceAccountDir, NamespaceFile)
	b, err := os.ReadFile(nsFile)
	if err != nil {
		return fmt.Errorf("--kubeconfig-out: reading the pod's namespace: %w", err)
	}
	ns := strings.TrimSpace(string(b))
	server := "http://" + loopbackAddr(s.Addr())
	if err := WriteKubeconfig(s.cfg.KubeconfigOut, server, ns); err != nil {
		return fmt.Errorf("--kubeconfig-out, with the namespace read from %s: %w", nsFile, err)
	}
	s.log.Info("wrote the app containers' kubeconfig", "path", s.cfg.KubeconfigOut, "server", server, "namespace", ns)
	return nil
}

// loopbackAddr is the address a client in the pod dials for a listener: the listener's own,
// or 127.0.0.1 when it listens on every address.
func loopbackAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// KubeconfigConfig is the configuration of `api-proxy write-kubeconfig`.
type KubeconfigConfig struct {
	// Out is the file to write.
	Out string
	// Port is the loopback port the sidecar serves the API on.
	Port int
	// Namespace is the pod's namespace, the default namespace of the kubeconfig's context.
	Namespace string
}

// BindFlags registers the flags of `api-proxy write-kubeconfig` on fs. --kubeconfig-out and
// --port mean what they mean to the proxy itself.
func (c *KubeconfigConfig) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Out, proxyargs.KubeconfigOut, c.Out, "The file to write the kubeconfig to (atomically, mode 0644). Required.")
	fs.IntVar(&c.Port, proxyargs.Port, c.Port, "The loopback port on which the sidecar serves the API.")
	fs.StringVar(&c.Namespace, proxyargs.Namespace, c.Namespace, "The pod's namespace, the default namespace of the kubeconfig's context "+
		"(from the downward API's metadata.namespace). Required.")
}

// Write validates c, reporting every problem at once, and writes the kubeconfig.
func (c *KubeconfigConfig) Write() error {
	var errs []error
	if c.Out == "" {
		errs = append(errs, errors.New("--kubeconfig-out is empty: want the path of the file to write"))
	}
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a port: want 1 to 65535", c.Port))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace is empty: want the pod's namespace"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	server := "http://" + net.JoinHostPort(DefaultAddress, strconv.Itoa(c.Port))
	return WriteKubeconfig(c.Out, server, c.Namespace)
}

package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// DefaultCACertificates is the host's PEM bundle (Debian's ca-certificates), the same set the
// distroless base of the Dockerfile carries.
const DefaultCACertificates = "/etc/ssl/certs/ca-certificates.crt"

// caCertificatesPath is where the images hold the CA bundle, as in distroless and Debian.
const caCertificatesPath = "/etc/ssl/certs/ca-certificates.crt"

// Image references of the images Images describes. The test suite of test/realcluster and
// the chart values of `make e2e` use the same names; the tag is not "latest" so that the
// kubelet's IfNotPresent never tries to pull.
const (
	InjectorRef = "localhost/api-access-injector/api-access-injector:e2e"
	ProxyRef    = "localhost/api-access-injector/api-proxy:e2e"
	AppRef      = "localhost/api-access-injector/e2e-app:e2e"
	// KubectlRef is the chart's default image.kubectl and the image of config/samples: the
	// kubectl of `make envtest` (the same Kubernetes version) stands in for it, so that both
	// run unchanged on the node.
	KubectlRef = "registry.k8s.io/kubectl:v1.37.2"
	// PauseRef is the sandbox image containerd is configured with (hack/e2e/config).
	PauseRef = "registry.k8s.io/pause:3.10.1"
	// HostUsrRef is an image of no files of its own: a merged-/usr root (bin, lib, lib64 and
	// sbin are links into /usr) for a pod that mounts the node's /usr read-only there by
	// hostPath. It runs, unmodified and with no registry, the node's Debian programs that the
	// transparent-mode test uses as in-cluster clients nobody here wrote: python3 with
	// python3-kubernetes, and curl (`make clients` installs them).
	HostUsrRef = "localhost/api-access-injector/hostusr:e2e"
)

// Spec describes one image.
type Spec struct {
	// Name names the tarball (<Name>.tar) and, for the product images, the Dockerfile target.
	Name string
	// Ref is the image reference the tarball is tagged with.
	Ref string
	// Files maps a source (resolved by Sources.path) to its absolute path in the image.
	Files []File
	// Entrypoint, User and ExposedPorts go to the image configuration as in a Dockerfile's
	// ENTRYPOINT, USER and EXPOSE ("8001/tcp").
	Entrypoint   []string
	User         string
	ExposedPorts []string
	// CACertificates adds the CA bundle at /etc/ssl/certs/ca-certificates.crt.
	CACertificates bool
	// Dirs are empty directories (0755) to add, as absolute paths.
	Dirs []string
	// Symlinks are symbolic links to add.
	Symlinks []Symlink
}

// Symlink is a symbolic link of an image.
type Symlink struct {
	// Path is the link's absolute path in the image; Target what it points to, as written.
	Path, Target string
}

// File is one executable of an image.
type File struct {
	// Binary is a file name in Sources.BinDir, or "kubectl" for Sources.Kubectl.
	Binary string
	// Path is its absolute path in the image.
	Path string
}

// Sources says where the files of the images come from.
type Sources struct {
	BinDir         string
	Kubectl        string
	CACertificates string
}

func (s Sources) path(binary string) string {
	if binary == "kubectl" {
		return s.Kubectl
	}
	return filepath.Join(s.BinDir, binary)
}

// nonRoot is the user of the Dockerfile's images (distroless "nonroot").
const nonRoot = "65532:65532"

// ProductImages are the two images of the Dockerfile, by target name. A test checks them
// against the Dockerfile.
func ProductImages() []Spec {
	return []Spec{
		{
			Name: "injector", Ref: InjectorRef, User: nonRoot, CACertificates: true,
			Files:      []File{{Binary: "api-access-injector", Path: "/api-access-injector"}},
			Entrypoint: []string{"/api-access-injector"},
		},
		{
			Name: "proxy", Ref: ProxyRef, User: nonRoot, CACertificates: true,
			Files:      []File{{Binary: "api-proxy", Path: "/api-proxy"}},
			Entrypoint: []string{"/api-proxy"},
		},
	}
}

// Images are the product images and the test images of `make e2e`.
func Images() []Spec {
	return append(ProductImages(),
		// The workload of test/realcluster (test/realcluster/app).
		Spec{
			Name: "e2e-app", Ref: AppRef, User: nonRoot,
			Files:      []File{{Binary: "e2e-app", Path: "/e2e-app"}},
			Entrypoint: []string{"/e2e-app"},
		},
		// kubectl at /bin/kubectl, entrypoint kubectl, like registry.k8s.io/kubectl: the
		// sidecar of sidecar.mode=kubectl, the test container that runs `kubectl get pods`,
		// and the app of config/samples.
		Spec{
			Name: "kubectl", Ref: KubectlRef, User: nonRoot,
			Files:      []File{{Binary: "kubectl", Path: "/bin/kubectl"}},
			Entrypoint: []string{"/bin/kubectl"},
		},
		// The pod sandbox: nothing is pulled on the node, not even pause.
		Spec{
			Name: "pause", Ref: PauseRef, User: nonRoot,
			Files:      []File{{Binary: "pause", Path: "/pause"}},
			Entrypoint: []string{"/pause"},
		},
		// The node's /usr, once a pod mounts it at /usr: Debian's layout since bookworm
		// (https://wiki.debian.org/UsrMerge), so that /bin/sh and the dynamic loader at
		// /lib64/ld-linux-x86-64.so.2 resolve. /etc is empty but for what the runtime mounts
		// (hosts, resolv.conf, hostname): no program used reads more of it.
		Spec{
			Name: "hostusr", Ref: HostUsrRef, User: nonRoot,
			Entrypoint: []string{"/bin/sh"},
			Dirs:       []string{"/usr", "/etc"},
			Symlinks: []Symlink{
				{Path: "/bin", Target: "usr/bin"}, {Path: "/lib", Target: "usr/lib"},
				{Path: "/lib64", Target: "usr/lib64"}, {Path: "/sbin", Target: "usr/sbin"},
			},
		},
	)
}

// epoch is every file's and the image's timestamp: the same binaries give the same image.
var epoch = time.Unix(0, 0).UTC()

// Build writes the image of spec as a docker-archive tarball to out.
func Build(spec Spec, src Sources, out string) error {
	ref, err := name.NewTag(spec.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", spec.Ref, err)
	}
	layer, err := buildLayer(spec, src)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("adding the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading the image configuration: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = slices.Clone(spec.Entrypoint)
	cf.Config.User = spec.User
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if spec.CACertificates {
		cf.Config.Env = append(cf.Config.Env, "SSL_CERT_FILE="+caCertificatesPath)
	}
	if len(spec.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range spec.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("setting the image configuration: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// buildLayer makes the image's only layer: /tmp (writable by all, as the runtime expects),
// the parent directories, the binaries (0755) and the CA bundle (0644), owned by root.
func buildLayer(spec Spec, src Sources) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(dir string, mode int64) error {
		if dirs[dir] {
			return nil
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: mode, ModTime: epoch})
	}
	addFile := func(from, to string, mode int64) error {
		data, err := os.ReadFile(from)
		if err != nil {
			return fmt.Errorf("reading %s: %w", from, err)
		}
		to = strings.TrimPrefix(path.Clean(to), "/")
		var parents []string
		for d := path.Dir(to); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := addDir(d, 0o755); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: to, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	if err := addDir("tmp", 0o1777); err != nil {
		return nil, err
	}
	for _, d := range spec.Dirs {
		if err := addDir(strings.TrimPrefix(path.Clean(d), "/"), 0o755); err != nil {
			return nil, err
		}
	}
	for _, l := range spec.Symlinks {
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(path.Clean(l.Path), "/"), Linkname: l.Target, Mode: 0o777, ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	for _, f := range spec.Files {
		if err := addFile(src.path(f.Binary), f.Path, 0o755); err != nil {
			return nil, err
		}
	}
	if spec.CACertificates {
		if err := addFile(src.CACertificates, caCertificatesPath, 0o644); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("making the layer: %w", err)
	}
	return layer, nil
}

// Command imgbuild turns static binaries into container images without Docker or a
// registry: each image is one layer holding the binaries (and, for the product images, the
// CA certificates), written as a docker-archive tarball that `ctr images import` and
// `docker load` accept. `make e2e-images` uses it for the one-node cluster of `make e2e`:
//
//	imgbuild -bin-dir bin -kubectl /path/to/kubectl -out DIR
//
// writes DIR/<name>.tar for every image of Images: the webhook and the sidecar exactly as
// the Dockerfile describes them (entrypoint, user 65532, CA certificates, nothing else), and
// the test images (the app of test/realcluster, kubectl, the pod sandbox's pause, and hostusr,
// a root for the node's own /usr).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imgbuild:", err)
		os.Exit(1)
	}
}

func run() error {
	binDir := flag.String("bin-dir", "bin", "Directory holding the static binaries: api-access-injector, api-proxy, e2e-app, pause.")
	kubectl := flag.String("kubectl", "", "Path of a static kubectl binary for the kubectl image.")
	caCerts := flag.String("ca-certificates", DefaultCACertificates, "PEM bundle of CA certificates copied into the product images.")
	out := flag.String("out", "", "Directory the image tarballs are written to.")
	flag.Parse()
	if *out == "" || *kubectl == "" {
		return fmt.Errorf("-out and -kubectl are required (see -help)")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", *out, err)
	}
	sources := Sources{BinDir: *binDir, Kubectl: *kubectl, CACertificates: *caCerts}
	for _, spec := range Images() {
		path := filepath.Join(*out, spec.Name+".tar")
		if err := Build(spec, sources, path); err != nil {
			return fmt.Errorf("image %s: %w", spec.Name, err)
		}
		fmt.Printf("%s %s\n", spec.Ref, path)
	}
	return nil
}

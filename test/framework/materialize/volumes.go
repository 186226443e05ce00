package materialize

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// file is one file of a volume, relative to the volume's directory.
type file struct {
	path string
	data []byte
	mode os.FileMode
}

// WriteVolumes writes, each under VolumeDir(name), the volumes that the named containers
// mount (all init and regular containers when none is named), and returns the directories
// it wrote. A directory is replaced as a whole, so a second call gives fresh tokens; an
// emptyDir is created once and then kept, since it lives as long as the pod and its
// containers share what they write there.
func (k *Kubelet) WriteVolumes(ctx context.Context, containers ...string) ([]string, error) {
	if len(containers) == 0 {
		for _, c := range slices.Concat(k.Pod.Spec.InitContainers, k.Pod.Spec.Containers) {
			containers = append(containers, c.Name)
		}
	}
	needed := map[string]bool{}
	for _, name := range containers {
		c, err := k.container(name)
		if err != nil {
			return nil, err
		}
		for _, m := range c.VolumeMounts {
			needed[m.Name] = true
		}
	}
	var dirs []string
	for _, v := range k.Pod.Spec.Volumes {
		if !needed[v.Name] {
			continue
		}
		delete(needed, v.Name)
		dir := k.VolumeDir(v.Name)
		if v.EmptyDir != nil {
			if err := emptyDir(dir, v.EmptyDir); err != nil {
				return dirs, fmt.Errorf("materialize: volume %q: %w", v.Name, err)
			}
			dirs = append(dirs, dir)
			continue
		}
		files, err := k.volumeFiles(ctx, v)
		if err != nil {
			return dirs, fmt.Errorf("materialize: volume %q: %w", v.Name, err)
		}
		if err := writeDir(dir, files); err != nil {
			return dirs, fmt.Errorf("materialize: volume %q: %w", v.Name, err)
		}
		dirs = append(dirs, dir)
	}
	for name := range needed {
		return dirs, fmt.Errorf("materialize: a container mounts volume %q, which the pod does not declare", name)
	}
	return dirs, nil
}

// volumeFiles returns the content of a volume, as the kubelet's volume plugins would write it.
func (k *Kubelet) volumeFiles(ctx context.Context, v corev1.Volume) ([]file, error) {
	switch s := v.VolumeSource; {
	case s.Projected != nil:
		mode := modeOr(s.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
		var files []file
		for i, p := range s.Projected.Sources {
			var fs []file
			var err error
			switch {
			case p.ServiceAccountToken != nil:
				fs, err = k.tokenFiles(ctx, p.ServiceAccountToken, mode)
			case p.ConfigMap != nil:
				fs, err = k.configMapFiles(ctx, p.ConfigMap.Name, p.ConfigMap.Items, p.ConfigMap.Optional, mode)
			case p.Secret != nil:
				fs, err = k.secretFiles(ctx, p.Secret.Name, p.Secret.Items, p.Secret.Optional, mode)
			case p.DownwardAPI != nil:
				fs, err = k.downwardFiles(p.DownwardAPI.Items, mode)
			default:
				err = fmt.Errorf("projected source %d: only serviceAccountToken, configMap, secret and downwardAPI are supported", i)
			}
			if err != nil {
				return nil, err
			}
			files = append(files, fs...)
		}
		return files, nil
	case s.ConfigMap != nil:
		return k.configMapFiles(ctx, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional,
			modeOr(s.ConfigMap.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode))
	case s.Secret != nil:
		return k.secretFiles(ctx, s.Secret.SecretName, s.Secret.Items, s.Secret.Optional,
			modeOr(s.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode))
	case s.DownwardAPI != nil:
		return k.downwardFiles(s.DownwardAPI.Items, modeOr(s.DownwardAPI.DefaultMode, corev1.DownwardAPIVolumeSourceDefaultMode))
	}
	return nil, fmt.Errorf("only emptyDir, projected, configMap, secret and downwardAPI volumes are supported")
}

// tokenFiles asks the TokenRequest API for the token the kubelet would request: for the
// pod's ServiceAccount, with the projection's audience and expiry, bound to the pod (so that
// deleting the pod invalidates it).
func (k *Kubelet) tokenFiles(ctx context.Context, p *corev1.ServiceAccountTokenProjection, mode os.FileMode) ([]file, error) {
	sa := k.Pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: p.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: k.Pod.Name, UID: k.Pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	tr, err := k.client.CoreV1().ServiceAccounts(k.Pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", k.Pod.Namespace, sa, err)
	}
	return []file{{path: p.Path, data: []byte(tr.Status.Token), mode: mode}}, nil
}

func (k *Kubelet) configMapFiles(ctx context.Context, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode) ([]file, error) {
	cm, err := k.client.CoreV1().ConfigMaps(k.Pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", k.Pod.Namespace, name, err)
	}
	data := map[string][]byte{}
	for key, v := range cm.Data {
		data[key] = []byte(v)
	}
	maps.Copy(data, cm.BinaryData)
	return keyFiles("ConfigMap "+name, data, items, optional, mode)
}

func (k *Kubelet) secretFiles(ctx context.Context, name string, items []corev1.KeyToPath, optional *bool, mode os.FileMode) ([]file, error) {
	s, err := k.client.CoreV1().Secrets(k.Pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", k.Pod.Namespace, name, err)
	}
	return keyFiles("Secret "+name, s.Data, items, optional, mode)
}

// keyFiles maps the keys of a ConfigMap or Secret to files: every key when items is empty.
func keyFiles(what string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, mode os.FileMode) ([]file, error) {
	var files []file
	if len(items) == 0 {
		for key, v := range data {
			files = append(files, file{path: key, data: v, mode: mode})
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files = append(files, file{path: it.Path, data: v, mode: modeOr(it.Mode, int32(mode))})
	}
	return files, nil
}

func (k *Kubelet) downwardFiles(items []corev1.DownwardAPIVolumeFile, mode os.FileMode) ([]file, error) {
	files := make([]file, 0, len(items))
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downward-API item %q: only fieldRef is supported", it.Path)
		}
		v, err := podField(k.Pod, it.FieldRef.FieldPath, false)
		if err != nil {
			return nil, fmt.Errorf("downward-API item %q: %w", it.Path, err)
		}
		files = append(files, file{path: it.Path, data: []byte(v), mode: modeOr(it.Mode, int32(mode))})
	}
	return files, nil
}

func modeOr(m *int32, def int32) os.FileMode {
	if m != nil {
		return os.FileMode(*m) & os.ModePerm
	}
	return os.FileMode(def) & os.ModePerm
}

// emptyDir creates the directory of an emptyDir volume unless it exists: a plain directory
// stands in for both media, the node's disk ("") and tmpfs ("Memory"), as both are shared by
// the pod's containers alike. World-writable, as the kubelet makes it, so that containers of
// any user can write. Its sizeLimit is not enforced.
func emptyDir(dir string, v *corev1.EmptyDirVolumeSource) error {
	if v.Medium != corev1.StorageMediumDefault && v.Medium != corev1.StorageMediumMemory {
		return fmt.Errorf("emptyDir medium %q: only the default and Memory are supported", v.Medium)
	}
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	// MkdirAll's mode is filtered by the umask; the kubelet's is not.
	return os.Chmod(dir, 0o777)
}

// writeDir replaces dir with the files.
func writeDir(dir string, files []file) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		clean := filepath.Clean(f.path)
		if filepath.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("file path %q leaves the volume", f.path)
		}
		p := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		// WriteFile's mode is filtered by the umask; the kubelet's is not.
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	return nil
}

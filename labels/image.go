package labels

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// ImageNameAnnotations are the container annotations CRI runtimes put the
// image name in: containerd's, then CRI-O's.
var ImageNameAnnotations = []string{"io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"}

// ImageName returns the image a container was made from, from its
// annotations, or "".
func ImageName(annotations map[string]string) string {
	for _, k := range ImageNameAnnotations {
		if v := annotations[k]; v != "" {
			return v
		}
	}
	return ""
}

// ContainerdImages reads the labels of image configs from containerd's image
// store (the runtime never passes them to NRI plugins).
type ContainerdImages struct {
	socket, namespace string

	mu     sync.Mutex
	client *client.Client
	cache  map[string]map[string]string // by image digest
}

// NewContainerdImages reads images from the containerd at socket, in the
// namespace (k8s.io for CRI).
func NewContainerdImages(socket, namespace string) *ContainerdImages {
	return &ContainerdImages{socket: socket, namespace: namespace, cache: map[string]map[string]string{}}
}

// Labels returns the labels of image ref's config.
func (c *ContainerdImages) Labels(ctx context.Context, ref string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, c.namespace), 2*time.Second)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		cl, err := client.New(c.socket, client.WithDefaultNamespace(c.namespace), client.WithTimeout(time.Second))
		if err != nil {
			return nil, fmt.Errorf("image labels of %s: connect to containerd at %s: %w", ref, c.socket, err)
		}
		c.client = cl
	}
	img, err := c.client.GetImage(ctx, ref)
	if err != nil {
		c.client.Close() // containerd may have restarted: connect afresh next time
		c.client = nil
		return nil, fmt.Errorf("image labels of %s: %w", ref, err)
	}
	key := img.Target().Digest.String()
	if l, ok := c.cache[key]; ok {
		return l, nil
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("image labels of %s: read its config: %w", ref, err)
	}
	c.cache[key] = spec.Config.Labels
	return spec.Config.Labels, nil
}

// Close lets go of the connection.
func (c *ContainerdImages) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
}

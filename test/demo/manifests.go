package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/pvnfs/pvnfs/test/localcluster"
)

// Manifests the demo applies, relative to the repository root.
const (
	manifestsDir = "deploy/kubernetes"
	wordpressDir = "deploy/examples/wordpress"
)

// readObjects decodes a multi-document YAML file of the repository into typed
// objects, skipping documents that hold only comments.
func readObjects(rel string) ([]runtime.Object, error) {
	root, err := localcluster.RepoRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		if t := string(bytes.TrimSpace(js)); t == "null" || t == "{}" {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		out = append(out, obj)
	}
}

// installDriverObjects creates the cluster-wide objects of a pvnfs installation that
// the demo's processes do not stand for: the CSIDriver (what kubelet knows of the
// driver), the server pods' PriorityClass and the example StorageClass, pointed at the
// local backend class. The Deployments, DaemonSet and RBAC of deploy/kubernetes are
// what the processes on this machine replace.
func (s *Stack) installDriverObjects(ctx context.Context) error {
	for _, file := range []string{"csidriver.yaml", "priorityclass.yaml", "storageclass.yaml"} {
		objs, err := readObjects(filepath.Join(manifestsDir, file))
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if sc, ok := obj.(*storagev1.StorageClass); ok {
				if sc.Parameters == nil {
					sc.Parameters = map[string]string{}
				}
				sc.Parameters["backendStorageClass"] = BackendClass
			}
			if err := s.create(ctx, obj); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	return nil
}

// create creates one object of the kinds the demo's manifests hold.
func (s *Stack) create(ctx context.Context, obj runtime.Object) error {
	c := s.Client
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *storagev1.CSIDriver:
		_, err = c.StorageV1().CSIDrivers().Create(ctx, o, opts)
	case *storagev1.StorageClass:
		_, err = c.StorageV1().StorageClasses().Create(ctx, o, opts)
	case *schedulingv1.PriorityClass:
		_, err = c.SchedulingV1().PriorityClasses().Create(ctx, o, opts)
	case *corev1.Namespace:
		if _, err = c.CoreV1().Namespaces().Create(ctx, o, opts); err == nil {
			// Pods are refused until the namespace's default ServiceAccount exists.
			err = s.Cluster.WaitServiceAccount(ctx, o.Name, "default", time.Minute)
		}
	case *corev1.Secret:
		_, err = c.CoreV1().Secrets(o.Namespace).Create(ctx, o, opts)
	case *corev1.PersistentVolumeClaim:
		_, err = c.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("the demo does not create %T", obj)
	}
	return err
}

// applyWordPress creates the WordPress example's namespace, its RWX claim, its
// Deployment (one replica, as the example starts) and its Service, in the example's
// namespace, plus the two Secrets the Deployment reads (random, as
// generate-secrets.sh makes them). MariaDB and the HorizontalPodAutoscaler are left
// out: no container runs here, so nothing would use the database, and nothing
// reports the CPU load the autoscaler needs; the demo scales the Deployment itself.
func (s *Stack) applyWordPress(ctx context.Context) error {
	nsObjs, err := readObjects(filepath.Join(wordpressDir, "namespace.yaml"))
	if err != nil {
		return err
	}
	objs, err := readObjects(filepath.Join(wordpressDir, "wordpress.yaml"))
	if err != nil {
		return err
	}
	for _, obj := range nsObjs {
		if err := s.create(ctx, obj); err != nil {
			return fmt.Errorf("%s/namespace.yaml: %w", wordpressDir, err)
		}
	}
	secrets, err := wordpressSecrets()
	if err != nil {
		return err
	}
	for _, sec := range secrets {
		if err := s.create(ctx, sec); err != nil {
			return err
		}
	}
	for _, obj := range objs {
		if _, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			continue
		}
		if m, ok := obj.(metav1.Object); ok && m.GetNamespace() == "" {
			m.SetNamespace(WordPressNamespace) // kustomization.yaml sets it
		}
		if err := s.create(ctx, obj); err != nil {
			return fmt.Errorf("%s/wordpress.yaml: %w", wordpressDir, err)
		}
	}
	return nil
}

// wordpressSecrets are the example's two Secrets with random values, as
// generate-secrets.sh writes them (without kustomize's name suffix).
func wordpressSecrets() ([]*corev1.Secret, error) {
	random := func(n int) (string, error) {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return base64.RawURLEncoding.EncodeToString(b), nil
	}
	db := map[string]string{"MARIADB_DATABASE": "wordpress", "MARIADB_USER": "wordpress"}
	keys := map[string]string{}
	for _, k := range []string{"MARIADB_PASSWORD", "MARIADB_ROOT_PASSWORD"} {
		v, err := random(24)
		if err != nil {
			return nil, err
		}
		db[k] = v
	}
	for _, k := range []string{"AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT"} {
		v, err := random(48)
		if err != nil {
			return nil, err
		}
		keys["WORDPRESS_"+k] = v
	}
	return []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "mariadb", Namespace: WordPressNamespace}, StringData: db},
		{ObjectMeta: metav1.ObjectMeta{Name: "wordpress-keys", Namespace: WordPressNamespace}, StringData: keys},
	}, nil
}

package controller

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	k8stesting "k8s.io/client-go/testing"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/pvnfs/pvnfs/pkg/parameters"
	"github.com/pvnfs/pvnfs/pkg/volume"
)

// accessModeService is a Service over a fake clientset holding the given objects,
// with a StorageClass cache of the classes among them. With refuseRWOP the fake API
// server answers a ReadWriteOncePod claim as a cluster without the feature does.
func accessModeService(t *testing.T, refuseRWOP bool, objs ...runtime.Object) (*Service, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	if refuseRWOP {
		client.PrependReactor("create", "persistentvolumeclaims", func(a k8stesting.Action) (bool, runtime.Object, error) {
			pvc := a.(k8stesting.CreateAction).GetObject().(*corev1.PersistentVolumeClaim)
			for _, m := range pvc.Spec.AccessModes {
				if m == corev1.ReadWriteOncePod {
					return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "PersistentVolumeClaim"}, pvc.Name, field.ErrorList{
						field.NotSupported(field.NewPath("spec", "accessModes"), m, []string{"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce"})})
				}
			}
			return false, nil, nil
		})
	}
	idx := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
	for _, o := range objs {
		if sc, ok := o.(*storagev1.StorageClass); ok {
			if err := idx.Add(sc); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &Service{cfg: testConfig, client: client, cache: &cache{storageClasses: storagelisters.NewStorageClassLister(idx)}}, client
}

func TestBackendAccessMode(t *testing.T) {
	class := func(name, provisioner string, isDefault bool) *storagev1.StorageClass {
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}, Provisioner: provisioner}
		if isDefault {
			sc.Annotations[isDefaultClass] = "true"
		}
		return sc
	}
	csiDriver := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: "ebs.csi.aws.com"}}
	tests := []struct {
		name       string
		params     map[string]string
		objs       []runtime.Object
		refuseRWOP bool
		want       corev1.PersistentVolumeAccessMode
		wantErr    string
	}{
		{name: "auto, CSI backend class", params: map[string]string{parameters.BackendStorageClass: "gp3"},
			objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", false), csiDriver}, want: corev1.ReadWriteOncePod},
		{name: "auto, default class of a CSI driver", objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", true), class("other", "example.com/nfs", false), csiDriver},
			want: corev1.ReadWriteOncePod},
		{name: "auto, provisioner without a CSIDriver object", params: map[string]string{parameters.BackendStorageClass: "local"},
			objs: []runtime.Object{class("local", "rancher.io/local-path", false), csiDriver}, want: corev1.ReadWriteOnce},
		{name: "auto, no default class", objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", false), csiDriver}, want: corev1.ReadWriteOnce},
		{name: "auto, the API server refuses ReadWriteOncePod", params: map[string]string{parameters.BackendStorageClass: "gp3"},
			objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", false), csiDriver}, refuseRWOP: true, want: corev1.ReadWriteOnce},
		{name: "auto value given explicitly", params: map[string]string{parameters.BackendAccessMode: "auto", parameters.BackendStorageClass: "gp3"},
			objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", false), csiDriver}, want: corev1.ReadWriteOncePod},
		{name: "ReadWriteOnce asked for, CSI backend", params: map[string]string{parameters.BackendAccessMode: "ReadWriteOnce", parameters.BackendStorageClass: "gp3"},
			objs: []runtime.Object{class("gp3", "ebs.csi.aws.com", false), csiDriver}, want: corev1.ReadWriteOnce},
		{name: "ReadWriteOncePod asked for, other provisioner", params: map[string]string{parameters.BackendAccessMode: "ReadWriteOncePod", parameters.BackendStorageClass: "local"},
			objs: []runtime.Object{class("local", "rancher.io/local-path", false)}, want: corev1.ReadWriteOncePod},
		{name: "ReadWriteOncePod asked for and refused: no fallback", params: map[string]string{parameters.BackendAccessMode: "ReadWriteOncePod"},
			refuseRWOP: true, wantErr: `Unsupported value: "ReadWriteOncePod"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, client := accessModeService(t, tc.refuseRWOP, tc.objs...)
			_, err := s.createBackendPVC(context.Background(), testSpec(t, tc.params))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("createBackendPVC() = %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			pvc, err := client.CoreV1().PersistentVolumeClaims(testConfig.Namespace).Get(context.Background(), "pvnfs-pvc-1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pvc.Spec.AccessModes) != 1 || pvc.Spec.AccessModes[0] != tc.want {
				t.Errorf("backend PVC access modes %v, want [%s]", pvc.Spec.AccessModes, tc.want)
			}
		})
	}
}

// TestCheckBackendClass: a volume that names no backend class in a cluster with
// no default one is refused at once (its backend claim would stay Pending
// forever), as is a named class that does not exist; a volume whose backend claim
// exists already is left to it.
func TestCheckBackendClass(t *testing.T) {
	class := func(name string, isDefault bool) *storagev1.StorageClass {
		sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}, Provisioner: "ebs.csi.aws.com"}
		if isDefault {
			sc.Annotations[isDefaultClass] = "true"
		}
		return sc
	}
	const id = "pvc-1"
	tests := []struct {
		name        string
		params      map[string]string
		classes     []runtime.Object
		claimExists bool
		wantErr     string
	}{
		{name: "default class", classes: []runtime.Object{class("gp3", true)}},
		{name: "named class", params: map[string]string{parameters.BackendStorageClass: "gp3"}, classes: []runtime.Object{class("gp3", false)}},
		{name: "no class named, no default", classes: []runtime.Object{class("gp3", false)},
			wantErr: `parameter "backendStorageClass" is not set and the cluster has no default StorageClass`},
		{name: "named class missing", params: map[string]string{parameters.BackendStorageClass: "gp2"}, classes: []runtime.Object{class("gp3", true)},
			wantErr: `StorageClass "gp2" does not exist`},
		{name: "no default, backend claim made already", classes: nil, claimExists: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := accessModeService(t, false, tc.classes...)
			pvcs := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{})
			if tc.claimExists {
				if err := pvcs.Add(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: testConfig.Namespace, Name: volume.ObjectName(id)}}); err != nil {
					t.Fatal(err)
				}
			}
			s.cache.pvcs = corelisters.NewPersistentVolumeClaimLister(pvcs)
			p, err := parameters.Parse(tc.params)
			if err != nil {
				t.Fatal(err)
			}
			err = s.checkBackendClass(volumeSpec{id: id, params: p})
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("checkBackendClass() = %v, want nil", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("checkBackendClass() = %v, want InvalidArgument saying %q", err, tc.wantErr)
			}
		})
	}
}

// Command provisioner is the test bed's dynamic volume provisioner. Every claim of a StorageClass whose
// provisioner is etcd-op.local/hostpath gets a directory under -root, bound to it as a hostPath volume; a
// class that waits for the first consumer gets a local volume on the node the scheduler selected instead,
// bound to that node by the volume's node affinity;
// a released volume whose reclaim policy is Delete has its directory removed and is deleted; a bound claim
// whose request grew past its volume's capacity gets the new capacity (a directory has no size of its own
// to grow, and no filesystem to resize), as an external resizer does for classes that allow expansion.
// It runs on the host next to the kubelet, so the data outlives pods and is gone with its volume.
// Directories are world-writable because hostPath volumes get no fsGroup ownership change.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const provisionerName = "etcd-op.local/hostpath"

type provisioner struct {
	client kubernetes.Interface
	root   string
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the provisioner's identity")
	root := flag.String("root", "", "directory that holds the volumes")
	interval := flag.Duration("interval", time.Second, "how often claims and volumes are reconciled")
	flag.Parse()
	if *root == "" || !filepath.IsAbs(*root) {
		log.Fatal("-root must be an absolute path")
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	p := provisioner{client: kubernetes.NewForConfigOrDie(config), root: filepath.Clean(*root)}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("provisioning %s volumes under %s", provisionerName, p.root)
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		// One list of claims serves both: new claims get volumes, grown ones their capacity.
		if claims, err := p.client.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{}); err != nil {
			log.Printf("listing claims: %v", err)
		} else {
			p.provision(ctx, claims.Items)
			p.resize(ctx, claims.Items)
		}
		p.reclaim(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// provision creates a bound volume for every pending claim of one of our classes.
func (p provisioner) provision(ctx context.Context, claims []corev1.PersistentVolumeClaim) {
	for i := range claims {
		claim := &claims[i]
		if claim.Spec.VolumeName != "" || claim.Status.Phase != corev1.ClaimPending || claim.Spec.StorageClassName == nil ||
			claim.DeletionTimestamp != nil {
			continue
		}
		class, err := p.client.StorageV1().StorageClasses().Get(ctx, *claim.Spec.StorageClassName, metav1.GetOptions{})
		if err != nil || class.Provisioner != provisionerName {
			continue
		}
		// A class that waits for the first consumer is provisioned once the scheduler has picked a node.
		node := ""
		if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			if node = claim.Annotations["volume.kubernetes.io/selected-node"]; node == "" {
				continue
			}
		}
		name := "pvc-" + string(claim.UID)
		dir := filepath.Join(p.root, name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			log.Printf("%s/%s: %v", claim.Namespace, claim.Name, err)
			continue
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			log.Printf("%s/%s: %v", claim.Namespace, claim.Name, err)
			continue
		}
		reclaim := corev1.PersistentVolumeReclaimDelete
		if class.ReclaimPolicy != nil {
			reclaim = *class.ReclaimPolicy
		}
		hostPathType := corev1.HostPathDirectory
		volume := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionerName},
			},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: claim.Spec.Resources.Requests[corev1.ResourceStorage]},
				AccessModes:                   claim.Spec.AccessModes,
				PersistentVolumeReclaimPolicy: reclaim,
				StorageClassName:              class.Name,
				VolumeMode:                    claim.Spec.VolumeMode,
				MountOptions:                  class.MountOptions,
				ClaimRef: &corev1.ObjectReference{
					Kind: "PersistentVolumeClaim", APIVersion: "v1",
					Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
				},
				PersistentVolumeSource: corev1.PersistentVolumeSource{
					HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
				},
			},
		}
		if node != "" {
			volume.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}}
			volume.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}}
		}
		_, err = p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{})
		switch {
		case err == nil:
			log.Printf("provisioned %s for %s/%s", name, claim.Namespace, claim.Name)
		case !apierrors.IsAlreadyExists(err):
			log.Printf("creating %s: %v", name, err)
		}
	}
}

// resize gives a bound claim of ours whose request exceeds its capacity the capacity it asks for: first on
// its volume, then in the claim's status, which is what the claim's owner waits for.
func (p provisioner) resize(ctx context.Context, claims []corev1.PersistentVolumeClaim) {
	for i := range claims {
		claim := &claims[i]
		requested, asked := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		capacity, bound := claim.Status.Capacity[corev1.ResourceStorage]
		if !asked || !bound || claim.Status.Phase != corev1.ClaimBound || claim.Spec.VolumeName == "" ||
			requested.Cmp(capacity) <= 0 {
			continue
		}
		volume, err := p.client.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
		if err != nil || volume.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName {
			continue
		}
		if held := volume.Spec.Capacity[corev1.ResourceStorage]; held.Cmp(requested) < 0 {
			volume.Spec.Capacity[corev1.ResourceStorage] = requested
			if _, err := p.client.CoreV1().PersistentVolumes().Update(ctx, volume, metav1.UpdateOptions{}); err != nil {
				log.Printf("growing %s: %v", volume.Name, err)
				continue
			}
		}
		claim.Status.Capacity[corev1.ResourceStorage] = requested
		claim.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: requested}
		if _, err := p.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
			log.Printf("growing %s/%s: %v", claim.Namespace, claim.Name, err)
			continue
		}
		log.Printf("grew %s/%s to %s", claim.Namespace, claim.Name, requested.String())
	}
}

// reclaim deletes our released volumes whose policy is Delete, data first.
func (p provisioner) reclaim(ctx context.Context) {
	volumes, err := p.client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		log.Printf("listing volumes: %v", err)
		return
	}
	for i := range volumes.Items {
		volume := &volumes.Items[i]
		if volume.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName || volumePath(volume) == "" ||
			volume.Status.Phase != corev1.VolumeReleased ||
			volume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
			continue
		}
		dir := filepath.Clean(volumePath(volume))
		if !strings.HasPrefix(dir, p.root+string(filepath.Separator)) {
			log.Printf("%s: path %s is outside %s, not deleting it", volume.Name, dir, p.root)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Printf("%s: removing %s: %v", volume.Name, dir, err)
			continue
		}
		err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			log.Printf("deleting %s: %v", volume.Name, err)
			continue
		}
		log.Printf("deleted %s and its data", volume.Name)
	}
}

// volumePath is the directory of one of our volumes, hostPath or local.
func volumePath(volume *corev1.PersistentVolume) string {
	switch {
	case volume.Spec.HostPath != nil:
		return volume.Spec.HostPath.Path
	case volume.Spec.Local != nil:
		return volume.Spec.Local.Path
	}
	return ""
}

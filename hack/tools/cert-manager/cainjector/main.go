// Command cainjector runs cert-manager's CA injector for the local test bed: it writes the authority of a
// Certificate into the webhook configurations, CRDs and APIServices annotated with
// cert-manager.io/inject-ca-from. Wired from cert-manager's main module (its own binary's module is not
// served by the Go module proxy). Flags: -kubeconfig (controller-runtime's; default $KUBECONFIG).
package main

import (
	"flag"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	apiregistration "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	// Its reconcilers log through controller-runtime: into this process's log, as the cluster's other parts.
	ctrl.SetLogger(klog.NewKlogr())
	scheme := runtime.NewScheme()
	utilruntime.Must(kubescheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensions.AddToScheme(scheme))
	utilruntime.Must(apiregistration.AddToScheme(scheme))
	ctx := ctrl.SetupSignalHandler()
	// No metrics or health listeners: nothing on the host scrapes them.
	config := ctrl.GetConfigOrDie()
	// The injectors apply the caBundle with a field manager named after the user agent's first word; without
	// one the API server refuses every apply.
	config.UserAgent = "cert-manager-cainjector"
	manager, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	utilruntime.Must(err)
	utilruntime.Must(cainjector.RegisterAllInjectors(ctx, manager, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
			cainjector.APIServiceName:                     true,
			cainjector.CustomResourceDefinitionName:       true,
		},
	}))
	utilruntime.Must(manager.Start(ctx))
}

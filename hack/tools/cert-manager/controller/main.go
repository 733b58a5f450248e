// Command controller runs cert-manager's certificate controllers with the CA and SelfSigned issuers, for the
// local test bed. cert-manager's own controller binary lives in a module the Go module proxy does not serve,
// so this main wires the controllers from the packages of cert-manager's main module; importing a
// controller or issuer package registers it. Flags: -kubeconfig (default $KUBECONFIG).
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"golang.org/x/sync/errgroup"

	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
	namespace := flag.String("cluster-resource-namespace", "cert-manager", "where ClusterIssuers keep their Secrets")
	workers := flag.Int("workers", 5, "workers per controller")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf.InitLogs()
	defer logf.FlushLogs()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	log := logf.FromContext(ctx)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *namespace},
		// A Certificate owns its Secret, so a Secret goes with the Certificate (and with whatever owns that).
		CertificateOptions: controller.CertificateOptions{EnableOwnerRef: true},
	})
	if err != nil {
		log.Error(err, "building the controller context")
		os.Exit(1)
	}
	shared, err := factory.Build()
	if err != nil {
		log.Error(err, "building the shared informers")
		os.Exit(1)
	}
	group, groupCtx := errgroup.WithContext(ctx)
	for name, constructor := range controller.Known() {
		runner, err := constructor(factory)
		if err != nil {
			log.Error(err, "creating a controller", "controller", name)
			os.Exit(1)
		}
		group.Go(func() error { return runner.Run(*workers, groupCtx) })
	}
	// Informers start after every controller registered its own.
	shared.SharedInformerFactory.Start(groupCtx.Done())
	shared.KubeSharedInformerFactory.Start(groupCtx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(groupCtx.Done())
	if err := group.Wait(); err != nil {
		log.Error(err, "a controller stopped")
		os.Exit(1)
	}
}

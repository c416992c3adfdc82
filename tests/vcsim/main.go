// Command vcsim-harness serves govmomi's vSphere simulator (the VPX model: a vCenter with DC0, hosts,
// clusters, VMs and datastores) on a loopback port, behind an http.Handler that injects the faults real
// vCenters produce and vcsim 0.24 does not (see harness.go and docs/testing.md). With -stock it serves
// the simulator as the stock vcsim command does, with nothing in front (stock.go).
//
// On start it prints one JSON line to stdout (url, ca_file, control_url, username, password) and serves
// until SIGTERM/SIGINT. The password is generated per run (or read from $VCSIM_PASSWORD), never taken
// from the command line, so it does not show up in `ps`.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
)

const defaultUsername = "administrator@vsphere.local"

// profiling: -profile (Go's block and mutex profiles, for finding where requests wait).
var profiling bool

type startupInfo struct {
	URL        string `json:"url"`
	CAFile     string `json:"ca_file,omitempty"`
	ControlURL string `json:"control_url"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	PID        int    `json:"pid"`
	Mode       string `json:"mode"` // "harness", or "stock" (-stock: stock.go)
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("vcsim-harness: ")

	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	plain := flag.Bool("plain-http", false, "serve plain HTTP instead of TLS")
	certDir := flag.String("cert-dir", "", "directory to write the CA certificate (ca.pem) into; default: a temporary directory removed at exit")
	vms := flag.Int("vms", 2, "VMs per standalone host and per cluster (simulator Model.Machine)")
	standalone := flag.Int("hosts", 1, "standalone hosts per datacenter")
	clusters := flag.Int("clusters", 1, "clusters per datacenter")
	clusterHosts := flag.Int("cluster-hosts", 3, "hosts per cluster")
	datastores := flag.Int("datastores", 1, "datastores shared by all hosts (LocalDS_0..N-1)")
	powerOn := flag.Bool("power-on", true, "power on the model's VMs at start (vcsim's default)")
	latency := flag.Duration("latency", 0, "injected latency per /sdk and /folder request (e.g. 30ms)")
	lockedDoor := flag.Bool("locked-door", false, "start with the locked-door question enabled for all VMs")
	questionTimeout := flag.Duration("question-timeout", 30*time.Second, "how long an unanswered locked-door question blocks its task")
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin reaches EOF (the parent died or closed it): no orphans")
	verbose := flag.Bool("verbose", false, "log every SOAP method name and injected fault to stderr (never bodies)")
	esx := flag.Bool("esx", false, "serve a standalone ESXi host (simulator.ESX(): ha-datacenter, apiType HostAgent) instead of a vCenter; -hosts, -clusters and -cluster-hosts do not apply")
	flag.BoolVar(&profiling, "profile", false, "record where goroutines block and wait for locks, served as Go profiles at /_harness/pprof/{block,mutex,goroutine,profile} (benchmarks)")
	stock := flag.Bool("stock", false, "serve govmomi's simulator as the stock vcsim command does: no handler in front, no repairs, no control API (stock.go)")
	flag.Parse()

	if profiling {
		runtime.SetBlockProfileRate(int(time.Millisecond / 10)) // blocking events of 100 µs and more
		runtime.SetMutexProfileFraction(1)
	}
	username := os.Getenv("VCSIM_USERNAME")
	if username == "" {
		username = defaultUsername
	}
	password := os.Getenv("VCSIM_PASSWORD")
	if password == "" {
		password = randomPassword()
	}
	// Nothing we start should inherit them.
	_ = os.Unsetenv("VCSIM_PASSWORD")
	_ = os.Unsetenv("VCSIM_USERNAME")
	if *stock {
		if bad := harnessOnlyFlags(); len(bad) > 0 {
			log.Fatalf("-stock serves vcsim without the harness: %s cannot be used with it", strings.Join(bad, ", "))
		}
	}

	model := simulator.VPX()
	if *esx {
		model, esxMode = simulator.ESX(), true
	} else {
		model.Host = *standalone
		model.Cluster = *clusters
		model.ClusterHost = *clusterHosts
	}
	model.Machine = *vms
	model.Datastore = *datastores
	model.Autostart = *powerOn
	if err := model.Create(); err != nil {
		log.Fatalf("creating the inventory: %v", err)
	}
	defer model.Remove()

	if *stock {
		serveStock(model, serveOptions{listen: *listen, plain: *plain, certDir: *certDir, stdinEOF: *stdinEOF,
			username: username, password: password})
		return
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	scheme := "https"
	if *plain {
		scheme = "http"
	}
	hostPort := net.JoinHostPort(addr.IP.String(), fmt.Sprint(addr.Port))

	// The simulator builds its mux (and starts a server of its own) in NewServer. We serve that mux
	// ourselves, behind the fault-injection handler, and close the simulator's listener at once.
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(username, password)}
	model.Service.RegisterEndpoints = true
	inner := model.Service.NewServer()
	inner.Server.Close()
	fixServiceURLs(scheme, hostPort)

	client, err := vim25.NewClient(context.Background(), model.Service)
	if err != nil {
		log.Fatalf("in-process client: %v", err)
	}

	h := newHarness(model.Service.ServeMux, client, username, password)
	h.verbose = *verbose
	h.cfg.LatencyMS = float64(*latency) / float64(time.Millisecond)
	h.cfg.LockedDoor.Enabled = *lockedDoor
	h.cfg.LockedDoor.TimeoutSeconds = questionTimeout.Seconds()
	h.defaults = h.cfg // POST /_harness/reset returns to the command line's settings
	h.stampChangeVersions()
	fixDatastores()

	info := startupInfo{
		URL:        fmt.Sprintf("%s://%s/sdk", scheme, hostPort),
		ControlURL: fmt.Sprintf("%s://%s/_harness", scheme, hostPort),
		Username:   username,
		Password:   password,
		PID:        os.Getpid(),
		Mode:       "harness",
	}

	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	var tmpDir string
	if !*plain {
		var cert tls.Certificate
		cert, info.CAFile, tmpDir = writeCertificate(*certDir)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}

	done := stopSignal(*stdinEOF)
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Fatalf("serve: %v", err)
		}
	}()

	line, _ := json.Marshal(info)
	fmt.Println(string(line))

	<-done
	h.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
	}
}

// writeCertificate makes the P-256 certificate and writes its PEM as ca.pem into dir (a new temporary
// directory when dir is empty, returned as tmpDir so the caller removes it at exit).
func writeCertificate(dir string) (cert tls.Certificate, caFile string, tmpDir string) {
	var err error
	if dir == "" {
		tmpDir, err = ioutil.TempDir("", "vcsim-harness-")
		if err != nil {
			log.Fatalf("temp dir: %v", err)
		}
		dir = tmpDir
	}
	cert, pemBytes, err := selfSignedCert()
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}
	caFile, err = filepath.Abs(filepath.Join(dir, "ca.pem"))
	if err != nil {
		log.Fatalf("cert path: %v", err)
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		log.Fatalf("cert dir: %v", err)
	}
	if err = ioutil.WriteFile(caFile, pemBytes, 0o644); err != nil {
		log.Fatalf("writing %s: %v", caFile, err)
	}
	return cert, caFile, tmpDir
}

// stopSignal fires on SIGTERM/SIGINT, and on stdin's EOF when asked (the parent died: no orphans).
func stopSignal(stdinEOF bool) chan os.Signal {
	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGTERM, syscall.SIGINT)
	if stdinEOF {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			done <- syscall.SIGTERM
		}()
	}
	return done
}

// fixServiceURLs points the URLs the simulator advertises (SessionManager service host, OptionManager
// "*.uri" settings, vcsim.server.url) at our listener instead of the simulator's closed one.
func fixServiceURLs(scheme, hostPort string) {
	simulator.Map.SessionManager().ServiceHostName = hostPort
	m := simulator.Map.OptionManager()
	for i := range m.Setting {
		setting := m.Setting[i].GetOptionValue()
		if !strings.HasSuffix(setting.Key, ".uri") && setting.Key != "vcsim.server.url" {
			continue
		}
		s, ok := setting.Value.(string)
		if !ok {
			continue
		}
		if u, err := url.Parse(s); err == nil {
			u.Scheme = scheme
			u.Host = hostPort
			setting.Value = u.String()
		}
	}
}

func randomPassword() string {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		log.Fatalf("random: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// selfSignedCert makes a P-256 certificate for 127.0.0.1/::1/localhost. The simulator's default is
// httptest's RSA-1024 key, which OpenSSL rejects ("EE certificate key too weak").
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vcsim-harness", Organization: []string{"esxi-configdrive test bed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}

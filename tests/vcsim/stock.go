package main

// -stock: govmomi's simulator served the way the stock vcsim command (govmomi's vcsim/main.go, v0.24)
// serves it: Model.Service.NewServer on the listen address, RegisterEndpoints, the login given as the
// Listen URL's user (as `vcsim -username -password` does) and our certificate (as `-tlscert/-tlskey` do).
// No handler stands in front of /sdk or /folder, nothing in the inventory is repaired, no changeVersion
// is stamped: the tests see exactly what stock vcsim answers. Only two things are ours, neither touching
// the vSphere API: the P-256 certificate (vcsim's own RSA-1024 one is refused by OpenSSL) and the JSON
// startup line, so tests/vsphere_harness.py starts it like the harness. /_harness answers that there is
// no control API, so a test that tries to inject a fault here fails loudly instead of testing nothing.

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"

	"github.com/vmware/govmomi/simulator"
)

type serveOptions struct {
	listen   string
	plain    bool
	certDir  string
	stdinEOF bool
	username string
	password string
}

// Flags that configure the harness's handler, which -stock does not have.
var harnessFlags = []string{"latency", "locked-door", "question-timeout", "verbose", "profile"}

func harnessOnlyFlags() []string {
	var bad []string
	flag.Visit(func(f *flag.Flag) {
		for _, name := range harnessFlags {
			if f.Name == name {
				bad = append(bad, "-"+name)
			}
		}
	})
	return bad
}

func serveStock(model *simulator.Model, o serveOptions) {
	model.Service.RegisterEndpoints = true
	model.Service.Listen = &url.URL{Host: o.listen, User: url.UserPassword(o.username, o.password)}
	var caFile, tmpDir string
	if !o.plain {
		var cert tls.Certificate
		cert, caFile, tmpDir = writeCertificate(o.certDir)
		model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	// The stock command hands NewServer http.DefaultServeMux (for expvar); a mux of our own holds the
	// one path that is not vCenter's.
	model.Service.ServeMux = http.NewServeMux()
	model.Service.ServeMux.HandleFunc("/_harness", stockControl)
	model.Service.ServeMux.HandleFunc("/_harness/", stockControl)
	srv := model.Service.NewServer()

	base := fmt.Sprintf("%s://%s", srv.URL.Scheme, srv.URL.Host) // srv.URL carries the login: never print it
	info := startupInfo{
		URL:        base + "/sdk",
		CAFile:     caFile,
		ControlURL: base + "/_harness",
		Username:   o.username,
		Password:   o.password,
		PID:        os.Getpid(),
		Mode:       "stock",
	}
	line, _ := json.Marshal(info)
	fmt.Println(string(line))

	<-stopSignal(o.stdinEOF)
	srv.Close()
	if tmpDir != "" {
		_ = os.RemoveAll(tmpDir)
	}
}

func stockControl(w http.ResponseWriter, r *http.Request) {
	if (r.URL.Path == "/_harness" || r.URL.Path == "/_harness/") && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, map[string]interface{}{"mode": "stock", "endpoints": []string{}})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{
		"error": "stock vcsim (-stock): no fault injection, counters or reset; " + r.Method + " " + r.URL.Path,
	})
}

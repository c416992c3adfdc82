package main

// The http.Handler in front of the simulator: decodes each /sdk SOAP envelope and either answers it
// (faults, the locked-door task, AnswerVM) or passes it on; guards /folder like vCenter does; serves the
// control API under /_harness. Faults are injected here rather than by wrapping simulator objects,
// because Map.Put of a wrapped VirtualMachine breaks ContainerView walks in govmomi 0.24.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const sessionCookie = "vmware_soap_session"
const ticketCookie = "vmware_cgi_ticket"

// Methods real vCenter answers without a session.
var unauthenticatedMethods = map[string]bool{
	"RetrieveServiceContent":        true,
	"Login":                         true,
	"LoginByToken":                  true,
	"LoginExtensionByCertificate":   true,
	"LoginExtensionBySubjectName":   true,
	"LoginExtensionByCertificateEx": true,
	"LoginBySSPI":                   true,
	"CloneSession":                  true,
	"CurrentTime":                   true,
}

type harness struct {
	mux      http.Handler
	client   *vim25.Client
	username string
	password string
	verbose  bool

	mu        sync.Mutex
	cfg       faultConfig
	defaults  faultConfig
	ctr       counters
	sessions  map[string]bool // session keys seen on authenticated calls (expired together)
	tickets   map[string]bool // vmware_cgi_ticket values handed out by AcquireGenericServiceTicket
	calls     int             // authenticated calls since session_expiry was armed
	questions map[string]*pendingQuestion
	qseq      int
	vmLocks   map[string]*sync.Mutex
	running   map[string]*simulator.Task // VM id -> its reconfigure held running (task_seconds, tasktime.go)
	lastCV    time.Time
	pages     map[string][]types.ObjectContent // continuation token -> objects not handed out yet (paging.go)
	pageSeq   int
}

func newHarness(mux http.Handler, client *vim25.Client, username, password string) *harness {
	d := defaultFaultConfig()
	return &harness{
		mux:       mux,
		client:    client,
		username:  username,
		password:  password,
		cfg:       d,
		defaults:  defaultFaultConfig(),
		ctr:       newCounters(),
		sessions:  map[string]bool{},
		tickets:   map[string]bool{},
		questions: map[string]*pendingQuestion{},
		vmLocks:   map[string]*sync.Mutex{},
		running:   map[string]*simulator.Task{},
		pages:     map[string][]types.ObjectContent{},
	}
}

func (h *harness) logf(format string, args ...interface{}) {
	if h.verbose {
		log.Printf(format, args...)
	}
}

func (h *harness) config() faultConfig {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg
}

func (h *harness) countFault(name string) {
	h.mu.Lock()
	h.ctr.Faults[name]++
	h.mu.Unlock()
	h.logf("fault: %s", name)
}

func (h *harness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/_harness/pprof/") && profiling:
		pprof.Handler(strings.TrimPrefix(r.URL.Path, "/_harness/pprof/")).ServeHTTP(w, r)
	case r.URL.Path == "/_harness" || strings.HasPrefix(r.URL.Path, "/_harness/"):
		h.serveControl(w, r)
	case r.URL.Path == "/sdk" || r.URL.Path == "/sdk/vimService":
		defer h.timed("sdk", time.Now())
		h.sleep()
		h.serveSDK(w, r)
	case strings.HasPrefix(r.URL.Path, "/folder/") || r.URL.Path == "/folder":
		defer h.timed("folder", time.Now())
		h.sleep()
		h.serveFolder(w, r)
	default:
		h.mux.ServeHTTP(w, r)
	}
}

// timed adds the time this handler took (the injected latency included) to the counters: what a request costs
// inside the harness, to tell apart from what it costs on the wire and in the client (benchmarks/timeline.py).
func (h *harness) timed(kind string, start time.Time) {
	d := time.Since(start).Seconds()
	h.mu.Lock()
	h.ctr.HandlerSeconds[kind] += d
	h.ctr.Handled[kind]++
	h.mu.Unlock()
}

func (h *harness) sleep() {
	if ms := h.config().LatencyMS; ms > 0 {
		time.Sleep(time.Duration(ms * float64(time.Millisecond)))
	}
}

// ---- /sdk ----

func (h *harness) serveSDK(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.mux.ServeHTTP(w, r)
		return
	}
	body, err := ioutil.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	method, err := simulator.UnmarshalBody(typeFunc, body)
	if err != nil {
		h.forward(w, r, body) // the simulator answers with its own fault
		return
	}

	h.mu.Lock()
	h.ctr.SOAPCalls++
	h.ctr.SOAPByMethod[method.Name]++
	h.mu.Unlock()
	h.logf("soap: %s %s", method.Name, method.This.Value)

	if status := h.takeSOAPThrottle(method.Name); status != 0 {
		h.logf("fault: soap %s answered HTTP %d", method.Name, status)
		http.Error(w, http.StatusText(status), status)
		return
	}
	cfg := h.config()
	if version := refusedVersion(r, cfg.RefusedVersions); version != "" {
		h.countFault(fVersionRefused)
		writeVersionFault(w, version)
		return
	}
	key := cookieValue(r, sessionCookie)
	authed := key != "" && h.sessionActive(key)
	if !authed && cfg.StrictAuth && !unauthenticatedMethods[method.Name] {
		h.countFault(fNotAuthenticated)
		writeFault(w, "The session is not authenticated.", notAuthenticated(method.This))
		return
	}
	if authed && h.tickSessionExpiry(key) {
		h.expireSessions()
		h.countFault(fNotAuthenticated)
		writeFault(w, "The session is not authenticated.", notAuthenticated(method.This))
		return
	}

	if h.refuseWrite(w, method) {
		return
	}
	if h.serveStorage(w, r, body, method, cfg) {
		return
	}
	switch {
	case esxMode && method.Name == "Login":
		h.loginAnswered(w, r, body)
		return
	case esxMode && method.Name == "Logout":
		forgetESXSessions(key)
	}
	switch method.Name {
	case "RetrievePropertiesEx":
		if !h.retrievePaged(w, r, body, cfg.CollectorPageSize) {
			h.forward(w, r, body)
		}
	case "ContinueRetrievePropertiesEx":
		h.continuePaged(w, method.Body.(*types.ContinueRetrievePropertiesEx), cfg.CollectorPageSize)
	case "Login":
		// A session is known from its login on, not from its first call after it: expire-sessions ends a client's
		// session even before that client's first call (the tool's login is RetrieveServiceContent and Login).
		rec := h.capture(r, body)
		if rec.Code == http.StatusOK {
			for _, c := range (&http.Response{Header: rec.Header()}).Cookies() {
				if c.Name == sessionCookie {
					h.mu.Lock()
					h.sessions[strings.Trim(c.Value, `"`)] = true
					h.mu.Unlock()
				}
			}
		}
		copyRecorded(w, rec)
	case "ReconfigVM_Task":
		h.reconfigure(w, r, body, method.Body.(*types.ReconfigVM_Task))
	case "AnswerVM":
		h.answer(w, method.Body.(*types.AnswerVM))
	case "DeleteDatastoreFile_Task", "CopyDatastoreFile_Task", "MoveDatastoreFile_Task":
		h.fileTask(w, r, body, cfg)
	case "AcquireGenericServiceTicket":
		rec := h.capture(r, body)
		if m := ticketIDPattern.FindSubmatch(rec.Body.Bytes()); m != nil {
			h.mu.Lock()
			h.tickets[string(m[1])] = true
			h.mu.Unlock()
		}
		copyRecorded(w, rec)
	case "CreateLocalDatastore", "CreateNasDatastore", "CreateVmfsDatastore":
		rec := h.capture(r, body)
		fixDatastores()
		copyRecorded(w, rec)
	case "CreateVM_Task", "CloneVM_Task", "RegisterVM_Task", "ImportVApp", "InstantClone_Task":
		rec := h.capture(r, body)
		h.stampChangeVersions()
		copyRecorded(w, rec)
	default:
		h.forward(w, r, body)
	}
}

var ticketIDPattern = regexp.MustCompile(`<id>([^<]+)</id>`)

func notAuthenticated(this types.ManagedObjectReference) types.BaseMethodFault {
	return &types.NotAuthenticated{NoPermission: types.NoPermission{Object: this, PrivilegeId: "System.View"}}
}

func cookieValue(r *http.Request, name string) string {
	if c, err := r.Cookie(name); err == nil {
		return strings.Trim(c.Value, `"`)
	}
	return ""
}

// sessionActive asks the simulator's SessionManager (in process, not through this handler).
func (h *harness) sessionActive(key string) bool {
	if esxMode {
		return esxSessionActive(key)
	}
	res, err := methods.SessionIsActive(context.Background(), h.client, &types.SessionIsActive{
		This:      *h.client.ServiceContent.SessionManager,
		SessionID: key,
		UserName:  h.username,
	})
	return err == nil && res.Returnval
}

// tickSessionExpiry counts an authenticated call; true means this call is the one past the limit.
func (h *harness) tickSessionExpiry(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions[key] = true
	if h.cfg.SessionExpiry.AfterCalls <= 0 {
		return false
	}
	h.calls++
	if h.calls <= h.cfg.SessionExpiry.AfterCalls {
		return false
	}
	h.calls = 0
	if !h.cfg.SessionExpiry.Repeat {
		h.cfg.SessionExpiry.AfterCalls = 0
	}
	return true
}

// expireSessions terminates every session seen so far, as an idle timeout on vCenter would.
func (h *harness) expireSessions() int {
	h.mu.Lock()
	keys := make([]string, 0, len(h.sessions))
	for k := range h.sessions {
		keys = append(keys, k)
	}
	h.sessions = map[string]bool{}
	h.tickets = map[string]bool{}
	h.mu.Unlock()
	forgetESXSessions()
	n := 0
	for _, k := range keys {
		_, err := methods.TerminateSession(context.Background(), h.client, &types.TerminateSession{
			This:      *h.client.ServiceContent.SessionManager,
			SessionId: []string{k},
		})
		if err == nil {
			n++
		}
	}
	h.mu.Lock()
	h.ctr.Faults[fSessionsExpired] += n
	h.mu.Unlock()
	h.logf("expired %d session(s)", n)
	return n
}

func (h *harness) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	h.mux.ServeHTTP(w, r)
}

// capture runs the simulator's handler into a recorder so the answer can be inspected first.
func (h *harness) capture(r *http.Request, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.forward(rec, r, body)
	return rec
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// ---- /folder ----

func (h *harness) serveFolder(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.ctr.Folder[r.Method]++
	h.mu.Unlock()
	cfg := h.config()

	if cfg.FolderAuth && !h.folderAuthorized(r) {
		h.countFault(fFolderUnauthorized)
		_, _ = io.Copy(ioutil.Discard, r.Body)
		w.Header().Set("WWW-Authenticate", `Basic realm="VMware HTTP server"`)
		http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
		return
	}
	if h.guardFolder(w, r) {
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, "/folder")
	for _, seg := range strings.Split(rel, "/") {
		if seg == ".." || seg == "." {
			// vcsim joins path segments unchecked; refuse to let a test escape the datastore.
			h.countFault(fFolderBadPath)
			http.Error(w, "400 Bad Request", http.StatusBadRequest)
			return
		}
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	if write && h.takeUploadFailure() {
		h.failUpload(w, r, cfg.UploadFailures)
		return
	}
	if write && h.refuseNamespaceUpload(w, r, cfg) {
		return
	}
	if write && cfg.FolderRequireParent {
		dir, ok := h.datastoreDir(r)
		if !ok {
			http.Error(w, "404 Not Found (datastore)", http.StatusNotFound)
			return
		}
		parent := path.Dir(path.Join(dir, strings.TrimPrefix(rel, "/")))
		if st, err := os.Stat(parent); err != nil || !st.IsDir() {
			h.countFault(fFolderNoParent)
			_, _ = io.Copy(ioutil.Discard, r.Body)
			http.Error(w, "404 Not Found (parent folder does not exist)", http.StatusNotFound)
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

func (h *harness) folderAuthorized(r *http.Request) bool {
	if key := cookieValue(r, sessionCookie); key != "" && h.sessionActive(key) {
		return true
	}
	if t := cookieValue(r, ticketCookie); t != "" {
		h.mu.Lock()
		ok := h.tickets[t]
		h.mu.Unlock()
		if ok {
			return true
		}
	}
	if u, p, ok := r.BasicAuth(); ok && u == h.username && p == h.password {
		return true
	}
	return false
}

// takeSOAPThrottle: the HTTP status to answer this call with (0: none), counted down.
func (h *harness) takeSOAPThrottle(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := &h.cfg.SOAPThrottle
	if t.Count <= 0 || unauthenticatedMethods[method] || !(len(t.Methods) == 0 || contains(t.Methods, method)) {
		return 0
	}
	t.Count--
	h.ctr.Faults[fSOAPThrottled]++
	return t.Status
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func (h *harness) takeUploadFailure() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.UploadFailures.Count <= 0 {
		return false
	}
	h.cfg.UploadFailures.Count--
	h.ctr.Faults[fUploadFailed]++
	return true
}

func (h *harness) failUpload(w http.ResponseWriter, r *http.Request, c uploadFailureConfig) {
	h.logf("fault: upload %s %s", c.Mode, r.URL.Path)
	if c.Mode == "reset" {
		if hj, ok := w.(http.Hijacker); ok {
			conn, _, err := hj.Hijack()
			if err == nil {
				if tc, ok := underlyingTCP(conn); ok {
					_ = tc.SetLinger(0) // close with RST, not FIN
				}
				_ = conn.Close()
				return
			}
		}
	}
	// Read the body first so the client sees the status rather than a broken pipe.
	_, _ = io.Copy(ioutil.Discard, r.Body)
	w.Header().Set("Retry-After", "1")
	http.Error(w, http.StatusText(c.Status), c.Status)
}

func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	if tc, ok := c.(*net.TCPConn); ok {
		return tc, true
	}
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		tc, ok := nc.NetConn().(*net.TCPConn)
		return tc, ok
	}
	return nil, false
}

// datastoreDir resolves dcPath/dsName the way the simulator does, to its local directory.
func (h *harness) datastoreDir(r *http.Request) (string, bool) {
	q := r.URL.Query()
	ctx := context.Background()
	finder := find.NewFinder(h.client, false)
	dc, err := finder.DatacenterOrDefault(ctx, q.Get("dcPath"))
	if err != nil {
		return "", false
	}
	finder.SetDatacenter(dc)
	ds, err := finder.DatastoreOrDefault(ctx, q.Get("dsName"))
	if err != nil {
		return "", false
	}
	obj, ok := simulator.Map.Get(ds.Reference()).(*simulator.Datastore)
	if !ok {
		return "", false
	}
	var dir string
	simulator.Map.WithLock(obj, func() { dir = obj.Info.GetDatastoreInfo().Url })
	return dir, true
}

// ---- control API ----

func (h *harness) serveControl(w http.ResponseWriter, r *http.Request) {
	route := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/_harness"), "/")
	switch {
	case route == "" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]interface{}{
			"endpoints": []string{"GET faults", "POST faults", "GET counters", "POST reset", "POST expire-sessions", "POST datastore"},
		})
	case route == "faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, h.config())
	case route == "faults" && r.Method == http.MethodPost:
		h.mu.Lock()
		next := h.cfg
		// Copy slices so a failed decode leaves the current config untouched.
		next.LockedDoor.VMs = append([]string{}, h.cfg.LockedDoor.VMs...)
		next.ReconfigFailures.VMs = append([]string{}, h.cfg.ReconfigFailures.VMs...)
		next.ownSlices()
		h.mu.Unlock()
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&next); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if next.LockedDoor.VMs == nil {
			next.LockedDoor.VMs = []string{}
		}
		if next.ReconfigFailures.VMs == nil {
			next.ReconfigFailures.VMs = []string{}
		}
		next.ownSlices()
		if err := next.validate(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		h.mu.Lock()
		if next.SessionExpiry != h.cfg.SessionExpiry {
			h.calls = 0
		}
		h.cfg = next
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, next)
	case route == "counters" && r.Method == http.MethodGet:
		h.mu.Lock()
		c := h.ctr.copy()
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]interface{}{
			"soap_calls":        c.SOAPCalls,
			"soap_by_method":    c.SOAPByMethod,
			"folder_requests":   c.Folder,
			"faults":            c.Faults,
			"handler_seconds":   c.HandlerSeconds,
			"handled":           c.Handled,
			"pending_questions": h.pendingQuestions(),
		})
	case route == "reset" && r.Method == http.MethodPost:
		h.cancelQuestions("the test harness was reset")
		h.mu.Lock()
		h.cfg = h.defaults
		h.cfg.LockedDoor.VMs = []string{}
		h.cfg.ReconfigFailures.VMs = []string{}
		h.cfg.ownSlices()
		h.ctr = newCounters()
		h.calls = 0
		h.mu.Unlock()
		writeJSON(w, http.StatusOK, h.config())
	case route == "datastore" && r.Method == http.MethodPost:
		h.serveDatastoreState(w, r)
	case route == "expire-sessions" && r.Method == http.MethodPost:
		n := h.expireSessions()
		writeJSON(w, http.StatusOK, map[string]int{"expired": n})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint " + r.Method + " " + r.URL.Path})
	}
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *harness) shutdown() {
	h.cancelQuestions("the test harness is shutting down")
}

// fixDatastores repairs two vcsim 0.24 inventory slips that matter for migration tests: a datastore
// mounted on several hosts lists only the last one in Datastore.host (each CreateLocalDatastore replaces
// the object), and the datastore folder holds the same child once per host.
func fixDatastores() {
	hosts := simulator.Map.All("HostSystem")
	for _, e := range simulator.Map.All("Datastore") {
		ds, ok := e.(*simulator.Datastore)
		if !ok {
			continue
		}
		var mounts []types.DatastoreHostMount
		for _, he := range hosts {
			host, ok := he.(*simulator.HostSystem)
			if !ok {
				continue
			}
			simulator.Map.WithLock(host, func() {
				for _, ref := range host.Datastore {
					if ref == ds.Self {
						mounts = append(mounts, types.DatastoreHostMount{
							Key: host.Self,
							MountInfo: types.HostMountInfo{
								Path:       ds.Info.GetDatastoreInfo().Url,
								AccessMode: string(types.HostMountModeReadWrite),
								Mounted:    types.NewBool(true),
								Accessible: types.NewBool(true),
							},
						})
					}
				}
			})
		}
		simulator.Map.WithLock(ds, func() {
			if len(mounts) > len(ds.Host) {
				simulator.Map.Update(ds, []types.PropertyChange{{Name: "host", Val: mounts}})
			}
		})
	}
	for _, e := range simulator.Map.All("Folder") {
		if f, ok := e.(*simulator.Folder); ok {
			dedupeRefs(f, "childEntity", &f.ChildEntity)
		}
	}
	for _, e := range simulator.Map.All("Datacenter") {
		if dc, ok := e.(*simulator.Datacenter); ok {
			dedupeRefs(dc, "datastore", &dc.Datastore)
			dedupeRefs(dc, "network", &dc.Network)
		}
	}
}

func dedupeRefs(obj mo.Reference, prop string, refs *[]types.ManagedObjectReference) {
	simulator.Map.WithLock(obj, func() {
		seen := map[types.ManagedObjectReference]bool{}
		var out []types.ManagedObjectReference
		for _, c := range *refs {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
		if len(out) != len(*refs) {
			simulator.Map.Update(obj, []types.PropertyChange{{Name: prop, Val: out}})
		}
	})
}

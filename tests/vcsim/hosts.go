package main

// -esx: the harness in front of a standalone ESXi host (simulator.ESX(): one datacenter, ha-datacenter, and
// about.apiType == HostAgent; REFERENCE §9). vcsim answers SessionIsActive with NotImplemented on a HostAgent (as
// ESXi does), so the harness remembers the sessions its Login answers opened, to guard /sdk and /folder as it
// does in front of a vCenter.

import (
	"net/http"
	"strings"
	"sync"
)

var esxMode bool

var esxSessions = struct {
	sync.Mutex
	keys map[string]bool
}{keys: map[string]bool{}}

// loginAnswered forwards a Login (ESX mode) and notes the session its answer opens.
func (h *harness) loginAnswered(w http.ResponseWriter, r *http.Request, body []byte) {
	rec := h.capture(r, body)
	if rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), "Fault>") {
		for _, c := range (&http.Response{Header: rec.Header()}).Cookies() {
			if c.Name == sessionCookie {
				esxSessions.Lock()
				esxSessions.keys[strings.Trim(c.Value, `"`)] = true
				esxSessions.Unlock()
			}
		}
	}
	copyRecorded(w, rec)
}

func esxSessionActive(key string) bool {
	esxSessions.Lock()
	defer esxSessions.Unlock()
	return esxSessions.keys[key]
}

// forgetESXSessions: expired sessions, or logged out, are not active any more.
func forgetESXSessions(keys ...string) {
	esxSessions.Lock()
	defer esxSessions.Unlock()
	if len(keys) == 0 {
		esxSessions.keys = map[string]bool{}
	}
	for _, k := range keys {
		delete(esxSessions.keys, k)
	}
}

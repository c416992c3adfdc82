package main

// Paged property collector answers (fault "collector_page_size"): vcsim answers every RetrievePropertiesEx in
// one piece, vCenter at most maxObjects (or its own limit) objects at a time with a continuation token for
// ContinueRetrievePropertiesEx. With a page size set, the harness takes vcsim's answer (to the caller's own
// session and collector) and hands it out that many objects at a time.

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// retrievePaged answers a RetrievePropertiesEx with its first page; false: paging is off.
func (h *harness) retrievePaged(w http.ResponseWriter, r *http.Request, body []byte, size int) bool {
	if size <= 0 {
		return false
	}
	rec := h.capture(r, body)
	res := &methods.RetrievePropertiesExBody{}
	dec := xml.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.TypeFunc = vim25TypeFunc
	if rec.Code != http.StatusOK || dec.Decode(&soap.Envelope{Body: res}) != nil || res.Res == nil || res.Res.Returnval == nil {
		copyRecorded(w, rec) // a fault, or nothing found: as vcsim said it
		return true
	}
	first := h.nextPage(res.Res.Returnval.Objects, size)
	writeResult(w, &methods.RetrievePropertiesExBody{Res: &types.RetrievePropertiesExResponse{Returnval: &first}})
	return true
}

// continuePaged answers a ContinueRetrievePropertiesEx with the next page of its token.
func (h *harness) continuePaged(w http.ResponseWriter, req *types.ContinueRetrievePropertiesEx, size int) {
	h.mu.Lock()
	rest, ok := h.pages[req.Token]
	delete(h.pages, req.Token)
	h.mu.Unlock()
	if !ok {
		writeFault(w, "unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return
	}
	if size < 1 {
		size = 1 // paging switched off meanwhile: still hand out what was left, a page at a time
	}
	next := h.nextPage(rest, size)
	writeResult(w, &methods.ContinueRetrievePropertiesExBody{Res: &types.ContinueRetrievePropertiesExResponse{Returnval: next}})
}

// nextPage is the first size objects, with a token for the rest if any is left.
func (h *harness) nextPage(objects []types.ObjectContent, size int) types.RetrieveResult {
	if len(objects) <= size {
		return types.RetrieveResult{Objects: objects}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pageSeq++
	token := fmt.Sprintf("page-%d", h.pageSeq)
	h.pages[token] = objects[size:]
	h.ctr.Faults[fPagesHeldBack]++
	return types.RetrieveResult{Objects: objects[:size], Token: token}
}

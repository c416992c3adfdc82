package main

// Where a drive may go and who may write there (issue 18): datastore states vcsim 0.24 models but never
// enforces, datastores inside a datastore cluster (StoragePod), a host on the free ESXi licence, and a user
// without the /folder privileges. Sources for each behaviour: ../shared/REFERENCE.md §9 and docs/testing.md
// ("Hosts, licences, privileges and datastore kinds").
//
// - POST /_harness/datastore {"name", "access_mode", "accessible", "maintenance_mode", "free_space"} changes
//   a datastore in the inventory (what vSphere reports). Inventory changes persist: reset does not undo them.
// - A datastore mounted read-only (any host[].mountInfo.accessMode == readOnly) refuses every write: folder
//   and file creation with CannotCreateFile "Read-only file system", deletes with CannotDeleteFile, /folder
//   PUT with 403. vcsim models accessMode but its FileManager writes anyway.
// - faults.root_squash names NFS datastores exported without no_root_squash: they mount read-write and look
//   healthy, and refuse file creation only when it is tried (CannotCreateFile "Permission denied", PUT 403).
// - faults.restricted_version: the free ESXi licence. Every write call (or only those in `calls`) fails with
//   RestrictedVersion; /folder PUT answers 403 with the same message. Real hosts are confirmed to refuse only
//   some calls this way (pyvmomi #625, #602): refusing all of them is the conservative reading.
// - faults.folder_forbidden: /folder answers 401 or 403 to every request, as vCenter does to a user who holds
//   Datastore.Browse/FileManagement on the datastore but not on the datacenter (rbvmomi #97, govmomi #2320).
// - /folder requests naming a datastore that sits in a StoragePod are resolved as vCenter resolves them
//   (vcsim's finder looks only among the datastore folder's direct children and answers 404).

import (
	"encoding/json"
	"fmt"
	"io"
	"io/ioutil"
	"net/http"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type restrictedVersionConfig struct {
	// Enabled: write calls fail with RestrictedVersion, as on a host with the free ESXi licence.
	Enabled bool `json:"enabled"`
	// Calls limits the refusal to these calls (names in writeCalls); empty means every write call.
	Calls []string `json:"calls"`
}

type folderForbiddenConfig struct {
	// Status: 401 or 403 answers every /folder request (a user without the privileges); 0 = off.
	Status int `json:"status"`
}

// The calls the tool writes with; "FolderPut" is a PUT (or POST) to /folder.
var writeCalls = []string{"MakeDirectory", "FolderPut", "ReconfigVM_Task", "DeleteDatastoreFile_Task",
	"CopyDatastoreFile_Task", "RelocateVM_Task", "CreateDirectory", "DeleteDirectory"}

const restrictedMessage = "Current license or ESXi version prohibits execution of the requested operation."

const (
	fRestrictedVersion = "restricted_version"
	fFolderForbidden   = "folder_forbidden"
	fDatastoreRefused  = "datastore_refused"
)

func init() {
	allFaultCounters = append(allFaultCounters, fRestrictedVersion, fFolderForbidden, fDatastoreRefused)
}

// ownSlices gives the decoded config slices of its own, so a decode never writes into the live config's.
func (c *faultConfig) ownSlices() {
	c.RestrictedVersion.Calls = append([]string{}, c.RestrictedVersion.Calls...)
	c.RootSquash = append([]string{}, c.RootSquash...)
	c.Namespace.Datastores = append([]string{}, c.Namespace.Datastores...)
	c.FileLocks.Files = append([]string{}, c.FileLocks.Files...)
	c.RefusedVersions = append([]string{}, c.RefusedVersions...)
}

func (c *faultConfig) validatePlacement() error {
	for _, call := range c.RestrictedVersion.Calls {
		if !contains(writeCalls, call) {
			return fmt.Errorf("restricted_version.calls: %q is not one of %v", call, writeCalls)
		}
	}
	if s := c.FolderForbidden.Status; s != 0 && s != 401 && s != 403 {
		return fmt.Errorf("folder_forbidden.status must be 0, 401 or 403")
	}
	return nil
}

// restricted: whether the free-licence switch refuses this write call.
func (h *harness) restricted(call string) bool {
	c := h.config().RestrictedVersion
	if !c.Enabled || !contains(writeCalls, call) || !(len(c.Calls) == 0 || contains(c.Calls, call)) {
		return false
	}
	h.countFault(fRestrictedVersion)
	return true
}

// ---- SOAP write calls ----

// refuseWrite answers a FileManager or VM write call itself when the licence or the datastore refuses it;
// true when it did.
func (h *harness) refuseWrite(w http.ResponseWriter, method *simulator.Method) bool {
	if h.restricted(method.Name) {
		writeFault(w, restrictedMessage, &types.RestrictedVersion{})
		return true
	}
	var target string
	creates := true
	switch req := method.Body.(type) {
	case *types.MakeDirectory:
		target = req.Name
	case *types.CopyDatastoreFile_Task:
		target = req.DestinationName
	case *types.DeleteDatastoreFile_Task:
		target, creates = req.Name, false
	case *types.CreateDirectory: // a namespace (namespace.go): refused like any folder a datastore cannot take
		if ds, ok := simulator.Map.Get(req.Datastore).(*simulator.Datastore); ok {
			target = "[" + ds.Name + "] " + req.DisplayName
		}
	default:
		return false
	}
	why := h.datastoreRefusal(datastoreOfPath(target), creates)
	if why == "" {
		return false
	}
	h.countFault(fDatastoreRefused)
	file := types.FileFault{File: target}
	if creates {
		writeFault(w, "Cannot complete file creation operation: "+why, &types.CannotCreateFile{FileFault: file})
	} else {
		writeFault(w, "Cannot delete file "+target+": "+why, &types.CannotDeleteFile{FileFault: file})
	}
	return true
}

func datastoreOfPath(p string) string {
	if strings.HasPrefix(p, "[") {
		if i := strings.Index(p, "]"); i > 0 {
			return p[1:i]
		}
	}
	return ""
}

// datastoreRefusal: why the named datastore refuses this write ("" when it does not).
func (h *harness) datastoreRefusal(name string, creates bool) string {
	ds := datastoreNamed(name)
	if ds == nil {
		return ""
	}
	readOnly := false
	simulator.Map.WithLock(ds, func() {
		for _, m := range ds.Host {
			if m.MountInfo.AccessMode == string(types.HostMountModeReadOnly) {
				readOnly = true
			}
		}
	})
	switch {
	case readOnly:
		return "Read-only file system"
	case creates && contains(h.config().RootSquash, name):
		return "Permission denied"
	}
	return ""
}

// ---- /folder ----

// guardFolder answers a /folder request itself when the user lacks the privileges, the licence or the
// datastore refuses a write; otherwise it resolves a datastore inside a StoragePod for vcsim. True: answered.
func (h *harness) guardFolder(w http.ResponseWriter, r *http.Request) bool {
	if s := h.config().FolderForbidden.Status; s != 0 {
		h.countFault(fFolderForbidden)
		_, _ = io.Copy(ioutil.Discard, r.Body)
		http.Error(w, fmt.Sprintf("%d %s", s, http.StatusText(s)), s)
		return true
	}
	name := r.URL.Query().Get("dsName")
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		why := ""
		if h.restricted("FolderPut") {
			why = "RestrictedVersion: " + restrictedMessage
		} else if why = h.datastoreRefusal(name, true); why != "" {
			h.countFault(fDatastoreRefused)
		}
		if why != "" {
			_, _ = io.Copy(ioutil.Discard, r.Body)
			http.Error(w, "403 Forbidden: "+why, http.StatusForbidden)
			return true
		}
	}
	if pod := podOf(name); pod != "" {
		q := r.URL.Query()
		q.Set("dsName", pod+"/"+name)
		r.URL.RawQuery = q.Encode()
	}
	return false
}

// podOf: the StoragePod a datastore sits in ("" when in none).
func podOf(name string) string {
	ds := datastoreNamed(name)
	if ds == nil || ds.Parent == nil || ds.Parent.Type != "StoragePod" {
		return ""
	}
	if pod, ok := simulator.Map.Get(*ds.Parent).(*simulator.StoragePod); ok {
		return pod.Name
	}
	return ""
}

// ---- POST /_harness/datastore ----

type datastoreState struct {
	Name            string  `json:"name"`
	AccessMode      *string `json:"access_mode"`      // readWrite or readOnly, on every host's mount
	Accessible      *bool   `json:"accessible"`       // summary.accessible (and each mount's)
	MaintenanceMode *string `json:"maintenance_mode"` // summary.maintenanceMode
	FreeSpace       *int64  `json:"free_space"`       // summary.freeSpace, bytes (vcsim: all share one disk)
}

func (h *harness) serveDatastoreState(w http.ResponseWriter, r *http.Request) {
	var s datastoreState
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ds := datastoreNamed(s.Name)
	if ds == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no datastore named " + s.Name})
		return
	}
	if s.AccessMode != nil && *s.AccessMode != "readWrite" && *s.AccessMode != "readOnly" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "access_mode must be readWrite or readOnly"})
		return
	}
	simulator.Map.WithLock(ds, func() {
		for i := range ds.Host {
			if s.AccessMode != nil {
				ds.Host[i].MountInfo.AccessMode = *s.AccessMode
			}
			if s.Accessible != nil {
				ds.Host[i].MountInfo.Accessible = types.NewBool(*s.Accessible)
			}
		}
		if s.Accessible != nil {
			ds.Summary.Accessible = *s.Accessible
		}
		if s.MaintenanceMode != nil {
			ds.Summary.MaintenanceMode = *s.MaintenanceMode
		}
		if s.FreeSpace != nil {
			ds.Summary.FreeSpace = *s.FreeSpace
			ds.Info.GetDatastoreInfo().FreeSpace = *s.FreeSpace
		}
		simulator.Map.Update(ds, []types.PropertyChange{{Name: "summary", Val: ds.Summary}, {Name: "host", Val: ds.Host}})
	})
	writeJSON(w, http.StatusOK, map[string]interface{}{"name": ds.Name, "summary": ds.Summary, "host": ds.Host})
}

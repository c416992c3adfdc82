package main

// Namespace datastores (vSAN, vVol) and locked files, as ../shared/REFERENCE.md §9 describes real vSphere;
// docs/testing.md "Storage: namespace datastores and locked files" has the table with the sources. Off by
// default: with no namespace datastore named and no lock asked for, every call passes to the simulator as before
// (except the DatastoreNamespaceManager methods, which vcsim 0.24 does not have at all).
//
// On disk a top-level namespace is a directory named by a UUID and a symlink with its friendly name, as on vSAN
// (the friendly name is a symlink to the stable UUID path), so the simulator's own FileManager, browser and
// /folder reach it by either name.

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

type namespaceConfig struct {
	// Datastores: these datastores behave as vSAN: capability.topLevelDirectoryCreateSupported false,
	// top-level folders made only with DatastoreNamespaceManager.CreateDirectory, top-level MakeDirectory and
	// /folder PUT refused, root listings by UUID with the name in friendlyName, non-empty folders not deleted.
	Datastores []string `json:"datastores"`
	// Backings: "keep" (an ISO backing stays as given) or "uuid" (one given by the friendly name is stored
	// with the UUID path, as a running VM opens it).
	Backings string `json:"backings"`
	// Listing: how a search's folderPath comes back: "" as asked, "uuid" or "name" (top-level part rewritten).
	Listing string `json:"listing"`
	// ConcurrentCreate: the next N CreateDirectory calls lose a race: another client makes the folder first
	// and the call answers SystemError "Invalid fault" (vSphere 8.0.1, terraform-provider-vsphere #2309).
	ConcurrentCreate int `json:"concurrent_create"`
}

type fileLockConfig struct {
	// PoweredOnISOs: deleting an ISO a powered-on VM's CD-ROM holds (or a folder holding one) fails FileLocked.
	PoweredOnISOs bool `json:"powered_on_isos"`
	// Files: these datastore paths ("[ds] a/b.iso", by either name) are locked too.
	Files []string `json:"files"`
}

func (c namespaceConfig) validate() error {
	switch {
	case c.Backings != "" && c.Backings != "keep" && c.Backings != "uuid":
		return fmt.Errorf("namespace.backings must be \"keep\" or \"uuid\"")
	case c.Listing != "" && c.Listing != "uuid" && c.Listing != "name":
		return fmt.Errorf("namespace.listing must be \"\", \"uuid\" or \"name\"")
	case c.ConcurrentCreate < 0:
		return fmt.Errorf("namespace.concurrent_create must be >= 0")
	}
	return nil
}

// Fault counter names of this file.
const (
	fNamespaceRefused = "namespace_refused"
	fNamespaceRace    = "namespace_race"
	fFileLocked       = "file_locked"
)

var nsMu sync.Mutex        // one namespace change at a time, and the capability last applied
var nsApplied = []string{} // the namespace datastores whose capability says so

// serveStorage answers the storage calls this file emulates; false: not one of them, the caller goes on.
func (h *harness) serveStorage(w http.ResponseWriter, r *http.Request, body []byte, method *simulator.Method, cfg faultConfig) bool {
	ns := cfg.Namespace
	applyCapability(ns.Datastores)
	switch req := method.Body.(type) {
	case *types.CreateDirectory:
		h.createDirectory(w, req)
	case *types.DeleteDirectory:
		h.deleteDirectory(w, req)
	case *types.ConvertNamespacePathToUuidPath:
		convertPath(w, req)
	case *types.MakeDirectory:
		return h.refuseTopLevel(w, req, ns)
	case *types.DeleteDatastoreFile_Task:
		return h.refuseDelete(w, req, cfg)
	case *types.SearchDatastore_Task, *types.SearchDatastoreSubFolders_Task:
		if len(ns.Datastores) == 0 {
			return false
		}
		rec := h.capture(r, body)
		rewriteSearch(rec.Body.Bytes(), ns)
		copyRecorded(w, rec)
	case *types.ReconfigVM_Task:
		if ns.Backings != "uuid" || len(ns.Datastores) == 0 {
			return false
		}
		h.reconfigure(w, r, body, req)
		rewriteBackings(req.This, ns)
	default:
		return false
	}
	return true
}

// ---- datastores ----

func isNamespace(ns namespaceConfig, name string) bool { return contains(ns.Datastores, name) }

func datastoreNamed(name string) *simulator.Datastore {
	for _, e := range simulator.Map.All("Datastore") {
		if ds, ok := e.(*simulator.Datastore); ok && ds.Name == name {
			return ds
		}
	}
	return nil
}

func datastoreURL(ds *simulator.Datastore) string {
	var url string
	simulator.Map.WithLock(ds, func() { url = ds.Info.GetDatastoreInfo().Url })
	return strings.TrimRight(url, "/")
}

// applyCapability sets capability.topLevelDirectoryCreateSupported false on the namespace datastores, and true
// again on those no longer named; the others keep what vcsim gave them.
func applyCapability(names []string) {
	nsMu.Lock()
	defer nsMu.Unlock()
	if strings.Join(names, "\x00") == strings.Join(nsApplied, "\x00") {
		return
	}
	changed := append(append([]string{}, names...), nsApplied...)
	nsApplied = append([]string{}, names...)
	for _, name := range changed {
		ds := datastoreNamed(name)
		if ds == nil {
			continue
		}
		simulator.Map.WithLock(ds, func() {
			c := ds.Capability
			c.TopLevelDirectoryCreateSupported = types.NewBool(!contains(names, ds.Name))
			simulator.Map.Update(ds, []types.PropertyChange{{Name: "capability", Val: c}})
		})
	}
}

// splitPath: "[ds] a/b" -> datastore, "a/b".
func splitPath(p string) (string, string, bool) {
	if !strings.HasPrefix(p, "[") || !strings.Contains(p, "]") {
		return "", "", false
	}
	i := strings.Index(p, "]")
	return p[1:i], strings.Trim(strings.TrimSpace(p[i+1:]), "/"), true
}

// namespaces: a datastore's top-level symlinks, friendly name -> UUID.
func namespaces(root string) map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if target, err := os.Readlink(path.Join(root, e.Name())); err == nil {
			out[e.Name()] = path.Base(target)
		}
	}
	return out
}

// retop rewrites the top-level part of a datastore path ("[ds] top/rest") with names (top -> new top).
func retop(p string, names map[string]string) string {
	ds, rel, ok := splitPath(p)
	if !ok || rel == "" {
		return p
	}
	parts := strings.SplitN(rel, "/", 2)
	to, ok := names[parts[0]]
	if !ok {
		return p
	}
	parts[0] = to
	return fmt.Sprintf("[%s] %s", ds, strings.Join(parts, "/"))
}

func invert(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[v] = k
	}
	return out
}

// ---- DatastoreNamespaceManager ----

func (h *harness) createDirectory(w http.ResponseWriter, req *types.CreateDirectory) {
	ds, ok := simulator.Map.Get(req.Datastore).(*simulator.Datastore)
	if !ok {
		writeFault(w, "Invalid datastore.", &types.InvalidDatastore{Datastore: &req.Datastore})
		return
	}
	cfg := h.config().Namespace
	name := req.DisplayName
	if !isNamespace(cfg, ds.Name) || name == "" || strings.ContainsAny(name, "/\\") {
		h.countFault(fNamespaceRefused)
		writeFault(w, "Cannot complete file creation operation.", &types.CannotCreateFile{FileFault: types.FileFault{File: name}})
		return
	}
	root := datastoreURL(ds)
	race := h.takeConcurrentCreate()
	nsMu.Lock()
	defer nsMu.Unlock()
	if _, err := os.Lstat(path.Join(root, name)); err == nil || race {
		if race {
			_, _ = makeNamespace(root, name) // the other creator's
			h.countFault(fNamespaceRace)
			writeFault(w, "A general system error occurred: Invalid fault", &types.SystemError{Reason: "Invalid fault"})
			return
		}
		writeFault(w, "Cannot complete the operation because the file or folder already exists", // no UUID in it
			&types.FileAlreadyExists{FileFault: types.FileFault{File: name}})
		return
	}
	id, err := makeNamespace(root, name)
	if err != nil {
		writeFault(w, err.Error(), &types.CannotCreateFile{FileFault: types.FileFault{File: name}})
		return
	}
	writeResult(w, &methods.CreateDirectoryBody{Res: &types.CreateDirectoryResponse{Returnval: root + "/" + id}})
}

func makeNamespace(root, name string) (string, error) {
	if target, err := os.Readlink(path.Join(root, name)); err == nil {
		return path.Base(target), nil
	}
	id := uuid.New().String()
	if err := os.Mkdir(path.Join(root, id), 0o755); err != nil {
		return "", err
	}
	return id, os.Symlink(id, path.Join(root, name))
}

func (h *harness) takeConcurrentCreate() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.Namespace.ConcurrentCreate <= 0 {
		return false
	}
	h.cfg.Namespace.ConcurrentCreate--
	return true
}

// deleteDirectory takes the stable (UUID) path only, and an empty folder only.
func (h *harness) deleteDirectory(w http.ResponseWriter, req *types.DeleteDirectory) {
	name, rel, ok := splitPath(req.DatastorePath)
	ds := datastoreNamed(name)
	if !ok || ds == nil || rel == "" || strings.Contains(rel, "/") {
		writeFault(w, "Invalid datastore path '"+req.DatastorePath+"'.", &types.InvalidDatastorePath{DatastorePath: req.DatastorePath})
		return
	}
	root := datastoreURL(ds)
	nsMu.Lock()
	defer nsMu.Unlock()
	friendly, isUUID := invert(namespaces(root))[rel]
	if !isUUID {
		h.countFault(fNamespaceRefused)
		writeFault(w, "Invalid datastore path '"+req.DatastorePath+"'.", &types.InvalidDatastorePath{DatastorePath: req.DatastorePath})
		return
	}
	if entries, _ := os.ReadDir(path.Join(root, rel)); len(entries) > 0 {
		h.countFault(fNamespaceRefused)
		writeFault(w, "Cannot delete file "+req.DatastorePath, &types.CannotDeleteFile{FileFault: types.FileFault{File: req.DatastorePath}})
		return
	}
	_ = os.Remove(path.Join(root, friendly))
	_ = os.Remove(path.Join(root, rel))
	writeResult(w, &methods.DeleteDirectoryBody{Res: &types.DeleteDirectoryResponse{}})
}

// convertPath: "<datastore url>/<friendly name>" -> "<datastore url>/<UUID>".
func convertPath(w http.ResponseWriter, req *types.ConvertNamespacePathToUuidPath) {
	for _, e := range simulator.Map.All("Datastore") {
		ds, ok := e.(*simulator.Datastore)
		if !ok {
			continue
		}
		root := datastoreURL(ds)
		if !strings.HasPrefix(req.NamespaceUrl, root+"/") {
			continue
		}
		name := strings.Trim(strings.TrimPrefix(req.NamespaceUrl, root+"/"), "/")
		if id, ok := namespaces(root)[name]; ok {
			writeResult(w, &methods.ConvertNamespacePathToUuidPathBody{
				Res: &types.ConvertNamespacePathToUuidPathResponse{Returnval: root + "/" + id}})
			return
		}
	}
	writeFault(w, "File "+req.NamespaceUrl+" was not found", &types.FileNotFound{FileFault: types.FileFault{File: req.NamespaceUrl}})
}

// ---- FileManager and /folder on a namespace datastore ----

// refuseTopLevel: MakeDirectory cannot make a top-level folder on a namespace datastore (nor one inside a
// top-level folder that does not exist), as vSAN refuses it (CannotCreateFile, vmware/vic #8040).
func (h *harness) refuseTopLevel(w http.ResponseWriter, req *types.MakeDirectory, ns namespaceConfig) bool {
	name, rel, ok := splitPath(req.Name)
	ds := datastoreNamed(name)
	if !ok || ds == nil || !isNamespace(ns, name) {
		return false
	}
	top := strings.SplitN(rel, "/", 2)[0]
	if _, err := os.Stat(path.Join(datastoreURL(ds), top)); err == nil && strings.Contains(rel, "/") {
		return false
	}
	h.countFault(fNamespaceRefused)
	fault := &types.CannotCreateFile{FileFault: types.FileFault{File: req.Name}}
	fault.FaultMessage = []types.LocalizableMessage{{Key: "vob.vsanprovider.object.creation.failed",
		Message: "Failed to create object."}}
	writeFault(w, "Cannot complete file creation operation.", fault)
	return true
}

// refuseNamespaceUpload: a /folder PUT of a file at a namespace datastore's root, or into a top-level folder
// that does not exist, fails (govmomi #654, #2568).
func (h *harness) refuseNamespaceUpload(w http.ResponseWriter, r *http.Request, cfg faultConfig) bool {
	name := r.URL.Query().Get("dsName")
	if !isNamespace(cfg.Namespace, name) {
		return false
	}
	dir, ok := h.datastoreDir(r)
	rel := strings.Trim(strings.TrimPrefix(r.URL.Path, "/folder"), "/")
	if !ok || !strings.Contains(rel, "/") {
		h.countFault(fNamespaceRefused)
		http.Error(w, "403 Forbidden (no files at a namespace datastore's root)", http.StatusForbidden)
		return true
	}
	if _, err := os.Stat(path.Join(dir, strings.SplitN(rel, "/", 2)[0])); err != nil {
		h.countFault(fNamespaceRefused)
		http.Error(w, "404 Not Found (no such top-level folder)", http.StatusNotFound)
		return true
	}
	return false
}

// refuseDelete: FileLocked for a locked file (or a folder holding one); on a namespace datastore,
// CannotDeleteFile for a top-level folder (DeleteDirectory takes those) and for a folder that is not empty.
func (h *harness) refuseDelete(w http.ResponseWriter, req *types.DeleteDatastoreFile_Task, cfg faultConfig) bool {
	name, rel, ok := splitPath(req.Name)
	ds := datastoreNamed(name)
	if !ok || ds == nil {
		return false
	}
	target := path.Join(datastoreURL(ds), rel)
	var fault types.BaseMethodFault
	var msg string
	if locked := lockedUnder(target, cfg); locked != "" {
		h.countFault(fFileLocked)
		fault = &types.FileLocked{FileFault: types.FileFault{File: locked}}
		msg = "The file '" + locked + "' is locked or in use."
	} else if isNamespace(cfg.Namespace, name) {
		st, err := os.Stat(target)
		entries, _ := os.ReadDir(target)
		if rel != "" && !strings.Contains(rel, "/") || err == nil && st.IsDir() && len(entries) > 0 {
			h.countFault(fNamespaceRefused)
			fault = &types.CannotDeleteFile{FileFault: types.FileFault{File: req.Name}}
			msg = "Cannot delete file " + req.Name
		}
	}
	if fault == nil {
		return false
	}
	fm := simulator.Map.Get(*h.client.ServiceContent.FileManager)
	task := simulator.CreateTask(fm.(mo.Reference), "deleteDatastoreFile", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, fault
	})
	ref := task.Run()
	simulator.Map.WithLock(task, func() {
		simulator.Map.Update(task, []types.PropertyChange{{Name: "info.error", Val: *localized(fault, msg, "")}})
	})
	writeResult(w, &methods.DeleteDatastoreFile_TaskBody{Res: &types.DeleteDatastoreFile_TaskResponse{Returnval: ref}})
	return true
}

// lockedUnder: the datastore path of a locked file at or below local path target ("" when none).
func lockedUnder(target string, cfg faultConfig) string {
	want := realPath(target)
	for local, shown := range lockedFiles(cfg.FileLocks) {
		if local == want || strings.HasPrefix(local, want+"/") {
			return shown
		}
	}
	return ""
}

func lockedFiles(c fileLockConfig) map[string]string {
	out := map[string]string{}
	add := func(p string) {
		name, rel, ok := splitPath(p)
		if ds := datastoreNamed(name); ok && ds != nil {
			out[realPath(path.Join(datastoreURL(ds), rel))] = p
		}
	}
	for _, p := range c.Files {
		add(p)
	}
	if !c.PoweredOnISOs {
		return out
	}
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		var isos []string
		simulator.Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || vm.Config == nil {
				return
			}
			for _, d := range vm.Config.Hardware.Device {
				if cd, ok := d.(*types.VirtualCdrom); ok {
					if b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok {
						isos = append(isos, b.FileName)
					}
				}
			}
		})
		for _, p := range isos {
			add(p)
		}
	}
	return out
}

func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// a missing file: resolve its folder
	if r, err := filepath.EvalSymlinks(path.Dir(p)); err == nil {
		return path.Join(r, path.Base(p))
	}
	return p
}

// ---- what a namespace datastore answers differently ----

// rewriteSearch: a finished search on a namespace datastore lists top-level entries by UUID with the name in
// friendlyName (govc ls.go), never the symlinks, and gives folderPath as Listing says.
func rewriteSearch(answer []byte, ns namespaceConfig) {
	m := taskRefPattern.FindSubmatch(answer)
	if m == nil {
		return
	}
	t, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "Task", Value: string(m[1])}).(*simulator.Task)
	if !ok {
		return
	}
	simulator.Map.WithLock(t, func() {
		switch res := t.Info.Result.(type) {
		case types.HostDatastoreBrowserSearchResults:
			rewriteResult(&res, ns)
			simulator.Map.Update(t, []types.PropertyChange{{Name: "info.result", Val: res}})
		case types.ArrayOfHostDatastoreBrowserSearchResults:
			for i := range res.HostDatastoreBrowserSearchResults {
				rewriteResult(&res.HostDatastoreBrowserSearchResults[i], ns)
			}
			simulator.Map.Update(t, []types.PropertyChange{{Name: "info.result", Val: res}})
		}
	})
}

func rewriteResult(res *types.HostDatastoreBrowserSearchResults, ns namespaceConfig) {
	name, rel, ok := splitPath(res.FolderPath)
	ds := datastoreNamed(name)
	if !ok || ds == nil || !isNamespace(ns, name) {
		return
	}
	names := namespaces(datastoreURL(ds))
	switch ns.Listing {
	case "uuid":
		res.FolderPath = retop(res.FolderPath, names)
	case "name":
		res.FolderPath = retop(res.FolderPath, invert(names))
	}
	if rel != "" {
		return
	}
	friendly := invert(names)
	var kept []types.BaseFileInfo
	for _, f := range res.File {
		info := f.GetFileInfo()
		if _, link := names[info.Path]; link {
			continue
		}
		info.FriendlyName = friendly[info.Path]
		kept = append(kept, f)
	}
	res.File = kept
}

// rewriteBackings: after a reconfigure, the VM's ISO backings given by a namespace's friendly name hold the
// UUID path, as a running VM opens them (vmware/vic #7050).
func rewriteBackings(ref types.ManagedObjectReference, ns namespaceConfig) {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		changed := false
		for _, d := range vm.Config.Hardware.Device {
			cd, ok := d.(*types.VirtualCdrom)
			if !ok {
				continue
			}
			b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo)
			if !ok {
				continue
			}
			name, _, ok := splitPath(b.FileName)
			ds := datastoreNamed(name)
			if !ok || ds == nil || !isNamespace(ns, name) {
				continue
			}
			if p := retop(b.FileName, namespaces(datastoreURL(ds))); p != b.FileName {
				b.FileName, changed = p, true
			}
		}
		if changed {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.hardware.device", Val: vm.Config.Hardware.Device}})
		}
	})
}

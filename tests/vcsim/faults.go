package main

// The fault configuration (switchable at run time through POST /_harness/faults) and the counters
// (GET /_harness/counters). JSON names are the control API; docs/testing.md documents them.

import (
	"fmt"
	"regexp"
	"sort"
)

type lockedDoorConfig struct {
	// Enabled: editing or removing the media of a connected CD-ROM on a powered-on VM raises the
	// msg.cdromdisconnect.locked question and blocks the reconfigure task until AnswerVM.
	Enabled bool `json:"enabled"`
	// VMs limits the fault to these VM names; empty means every VM.
	VMs []string `json:"vms"`
	// TimeoutSeconds: an unanswered question fails the task (msg.disk.onlineConnectFail) after this long.
	TimeoutSeconds float64 `json:"timeout_seconds"`
}

type sessionExpiryConfig struct {
	// AfterCalls: after this many authenticated SOAP calls (counted from when it is set) every open
	// session is terminated, and calls fail with NotAuthenticated until a new Login. 0 = off.
	AfterCalls int `json:"after_calls"`
	// Repeat: re-arm after each expiry (otherwise it fires once and AfterCalls resets to 0).
	Repeat bool `json:"repeat"`
}

type uploadFailureConfig struct {
	// Count: the next Count PUT/POST requests to /folder fail; decremented as they happen.
	Count int `json:"count"`
	// Mode: "status" answers with Status (default 503) after reading the body; "reset" drops the
	// connection with a TCP RST before reading the body.
	Mode   string `json:"mode"`
	Status int    `json:"status"`
}

type soapThrottleConfig struct {
	// Count: the next Count SOAP calls (of Methods, empty = any but the login family) are answered with HTTP
	// Status (default 503), as an overloaded vCenter or its reverse proxy does; decremented as they happen.
	Count   int      `json:"count"`
	Status  int      `json:"status"`
	Methods []string `json:"methods"`
}

type reconfigFailureConfig struct {
	// Count: the next Count ReconfigVM_Task calls (on VMs matching VMs, empty = all) return a task that
	// fails with Fault; nothing is applied. Decremented as they happen.
	Count   int      `json:"count"`
	VMs     []string `json:"vms"`
	Fault   string   `json:"fault"`
	Message string   `json:"message"`
}

type faultConfig struct {
	// LatencyMS is slept before each /sdk and /folder request.
	LatencyMS float64 `json:"latency_ms"`
	// StrictAuth: SOAP methods other than RetrieveServiceContent and the Login family need a valid
	// session (vcsim lets RetrieveProperties, Fetch and others through without one).
	StrictAuth bool `json:"strict_auth"`
	// FolderAuth: /folder needs a valid vmware_soap_session cookie, a vmware_cgi_ticket or Basic auth.
	FolderAuth bool `json:"folder_auth"`
	// FolderRequireParent: PUT into a folder that does not exist answers 404 (vcsim creates it).
	FolderRequireParent bool `json:"folder_require_parent"`
	// IDEHotplugRefused: adding or removing an IDE device (or controller) on a powered-on VM fails.
	IDEHotplugRefused bool `json:"ide_hotplug_refused"`
	// ChangeVersion: a ReconfigVM_Task whose spec.changeVersion differs from config.changeVersion fails
	// with ConcurrentAccess; every successful reconfigure sets a new config.changeVersion.
	ChangeVersion bool `json:"change_version"`
	// ExtraConfigMerge: a reconfigure's extraConfig replaces keys in place and an empty value removes
	// the key, as vSphere does (vcsim 0.24 appends duplicates).
	ExtraConfigMerge bool                  `json:"extra_config_merge"`
	LockedDoor       lockedDoorConfig      `json:"locked_door"`
	SessionExpiry    sessionExpiryConfig   `json:"session_expiry"`
	UploadFailures   uploadFailureConfig   `json:"upload_failures"`
	ReconfigFailures reconfigFailureConfig `json:"reconfig_failures"`
	SOAPThrottle     soapThrottleConfig    `json:"soap_throttle"`
	// Where the drive goes and who may write (placement.go).
	RestrictedVersion restrictedVersionConfig `json:"restricted_version"`
	FolderForbidden   folderForbiddenConfig   `json:"folder_forbidden"`
	RootSquash        []string                `json:"root_squash"`
	// Namespace and FileLocks: vSAN/vVol datastores and locked files (namespace.go).
	Namespace namespaceConfig `json:"namespace"`
	FileLocks fileLockConfig  `json:"file_locks"`
	// TaskSeconds: ReconfigVM_Task and datastore file tasks run this long (tasktime.go); 0 = vcsim's, at once.
	TaskSeconds float64 `json:"task_seconds"`
	// CollectorPageSize: RetrievePropertiesEx answers at most this many objects, with a continuation token for
	// the rest (ContinueRetrievePropertiesEx), as vCenter pages large answers (paging.go); 0 = vcsim's, in one.
	CollectorPageSize int `json:"collector_page_size"`
	// RefusedVersions: SOAP calls whose SOAPAction names one of these vim25 versions ("5.5" for "urn:vim25/5.5")
	// are answered with the fault vSphere gives a request version it does not serve (versions.go).
	RefusedVersions []string `json:"refused_versions"`
}

func defaultFaultConfig() faultConfig {
	return faultConfig{
		StrictAuth:          true,
		FolderAuth:          true,
		FolderRequireParent: true,
		IDEHotplugRefused:   true,
		ChangeVersion:       true,
		ExtraConfigMerge:    true,
		LockedDoor:          lockedDoorConfig{TimeoutSeconds: 30, VMs: []string{}},
		UploadFailures:      uploadFailureConfig{Mode: "status", Status: 503},
		ReconfigFailures:    reconfigFailureConfig{Fault: "GenericVmConfigFault", VMs: []string{}},
		SOAPThrottle:        soapThrottleConfig{Status: 503, Methods: []string{}},
		RestrictedVersion:   restrictedVersionConfig{Calls: []string{}},
		RootSquash:          []string{},
		RefusedVersions:     []string{},
	}
}

var apiVersionPattern = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`) // refused_versions: "5.5", "8.0.3.0"

var reconfigFaultNames = []string{"GenericVmConfigFault", "SystemError", "InvalidState", "TaskInProgress", "NotSupported", "ConcurrentAccess"}

func (c *faultConfig) validate() error {
	if c.LatencyMS < 0 || c.LatencyMS > 60000 {
		return fmt.Errorf("latency_ms must be within 0..60000")
	}
	if c.CollectorPageSize < 0 {
		return fmt.Errorf("collector_page_size must be >= 0")
	}
	for _, v := range c.RefusedVersions {
		if !apiVersionPattern.MatchString(v) {
			return fmt.Errorf("refused_versions: %q is not a vim25 version such as \"5.5\"", v)
		}
	}
	if c.TaskSeconds < 0 || c.TaskSeconds > 600 {
		return fmt.Errorf("task_seconds must be within 0..600")
	}
	if c.LockedDoor.TimeoutSeconds <= 0 {
		return fmt.Errorf("locked_door.timeout_seconds must be > 0")
	}
	if err := c.Namespace.validate(); err != nil {
		return err
	}
	if c.SessionExpiry.AfterCalls < 0 {
		return fmt.Errorf("session_expiry.after_calls must be >= 0")
	}
	if c.UploadFailures.Count < 0 || c.ReconfigFailures.Count < 0 || c.SOAPThrottle.Count < 0 {
		return fmt.Errorf("counts must be >= 0")
	}
	if c.SOAPThrottle.Status < 400 || c.SOAPThrottle.Status > 599 {
		return fmt.Errorf("soap_throttle.status must be an HTTP error status (400..599)")
	}
	switch c.UploadFailures.Mode {
	case "status":
		if c.UploadFailures.Status < 400 || c.UploadFailures.Status > 599 {
			return fmt.Errorf("upload_failures.status must be an HTTP error status (400..599)")
		}
	case "reset":
	default:
		return fmt.Errorf("upload_failures.mode must be \"status\" or \"reset\"")
	}
	if err := c.validatePlacement(); err != nil {
		return err
	}
	for _, n := range reconfigFaultNames {
		if n == c.ReconfigFailures.Fault {
			return nil
		}
	}
	return fmt.Errorf("reconfig_failures.fault must be one of %v", reconfigFaultNames)
}

func matchesVM(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

type counters struct {
	SOAPCalls    int            `json:"soap_calls"`
	SOAPByMethod map[string]int `json:"soap_by_method"`
	Folder       map[string]int `json:"folder_requests"`
	Faults       map[string]int `json:"faults"`
	// HandlerSeconds and Handled: time spent in the handler and requests handled, by "sdk" and "folder".
	HandlerSeconds map[string]float64 `json:"handler_seconds"`
	Handled        map[string]int     `json:"handled"`
}

// Fault counter names (keys of counters.Faults).
const (
	fNotAuthenticated   = "not_authenticated"
	fPagesHeldBack      = "collector_pages_held_back"
	fSessionsExpired    = "sessions_expired"
	fQuestionsAsked     = "questions_asked"
	fQuestionsYes       = "questions_answered_yes"
	fQuestionsNo        = "questions_answered_no"
	fQuestionsTimedOut  = "questions_timed_out"
	fQuestionsAutoAns   = "questions_auto_answered"
	fIDERefused         = "ide_hotplug_refused"
	fConcurrentAccess   = "concurrent_access"
	fReconfigFailed     = "reconfig_failed"
	fReconfigInProgress = "reconfig_task_in_progress"
	fUploadFailed       = "upload_failed"
	fFolderUnauthorized = "folder_unauthorized"
	fFolderNoParent     = "folder_missing_parent"
	fFolderBadPath      = "folder_bad_path"
	fSOAPThrottled      = "soap_throttled"
	fVersionRefused     = "version_refused"
)

var allFaultCounters = []string{fNotAuthenticated, fSessionsExpired, fQuestionsAsked, fQuestionsYes, fQuestionsNo,
	fQuestionsTimedOut, fQuestionsAutoAns, fIDERefused, fConcurrentAccess, fReconfigFailed, fReconfigInProgress,
	fUploadFailed, fFolderUnauthorized, fFolderNoParent, fFolderBadPath, fSOAPThrottled, fVersionRefused,
	fNamespaceRefused, fNamespaceRace, fFileLocked}

func newCounters() counters {
	c := counters{SOAPByMethod: map[string]int{}, Folder: map[string]int{}, Faults: map[string]int{},
		HandlerSeconds: map[string]float64{}, Handled: map[string]int{}}
	for _, k := range allFaultCounters {
		c.Faults[k] = 0
	}
	return c
}

func (c counters) copy() counters {
	out := counters{SOAPCalls: c.SOAPCalls, SOAPByMethod: map[string]int{}, Folder: map[string]int{}, Faults: map[string]int{},
		HandlerSeconds: map[string]float64{}, Handled: map[string]int{}}
	for k, v := range c.HandlerSeconds {
		out.HandlerSeconds[k] = v
	}
	for k, v := range c.Handled {
		out.Handled[k] = v
	}
	for k, v := range c.SOAPByMethod {
		out.SOAPByMethod[k] = v
	}
	for k, v := range c.Folder {
		out.Folder[k] = v
	}
	keys := make([]string, 0, len(c.Faults))
	for k := range c.Faults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Faults[k] = c.Faults[k]
	}
	return out
}

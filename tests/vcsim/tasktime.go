package main

// Task time (fault 10, task_seconds): vcsim 0.24 ends every task before its creating call returns; real vSphere's
// ReconfigVM_Task and datastore file tasks run for hundreds of milliseconds to seconds. With task_seconds > 0
// the harness lets the simulator do the work, then shows the task as running (info.state running, no
// completeTime, result and error withheld) for that long before it reports the real outcome. A second
// ReconfigVM_Task on a VM whose reconfigure is still running fails with TaskInProgress naming it, as vSphere's
// does (vSphere Web Services API reference, vim.fault.TaskInProgress: "a fault when an operation tries to access
// an entity that already has another (long) operation in progress", thrown by ReconfigVM_Task among others; its
// task: "the task already in progress when the operation was attempted").

import (
	"net/http"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// taskDuration: how long a task runs, from the configuration (0: vcsim's own, ended at once).
func (c faultConfig) taskDuration() time.Duration {
	return time.Duration(c.TaskSeconds * float64(time.Second))
}

// runningReconfigure: the reconfigure task still running on the VM (by managed object id), if any.
func (h *harness) runningReconfigure(vm string) *simulator.Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running[vm]
}

// holdTask shows the finished task t as running for d, then restores its real outcome. With vm given, the
// task is that VM's reconfigure (a second one meanwhile fails with TaskInProgress).
func (h *harness) holdTask(t *simulator.Task, d time.Duration, vm string) {
	var final types.TaskInfo
	simulator.Map.WithLock(t, func() {
		final = t.Info
		simulator.Map.Update(t, []types.PropertyChange{
			{Name: "info.state", Val: types.TaskInfoStateRunning},
			{Name: "info.completeTime", Val: nil},
			{Name: "info.error", Val: nil},
			{Name: "info.result", Val: nil},
		})
	})
	if vm != "" {
		h.mu.Lock()
		h.running[vm] = t
		h.mu.Unlock()
	}
	h.logf("task: %s held running for %s", t.Self.Value, d)
	time.AfterFunc(d, func() {
		if vm != "" {
			h.mu.Lock()
			if h.running[vm] == t {
				delete(h.running, vm)
			}
			h.mu.Unlock()
		}
		simulator.Map.WithLock(t, func() {
			var errVal, result interface{}
			if final.Error != nil {
				errVal = *final.Error
			}
			if final.Result != nil {
				result = final.Result
			}
			simulator.Map.Update(t, []types.PropertyChange{
				{Name: "info.result", Val: result},
				{Name: "info.error", Val: errVal},
				{Name: "info.completeTime", Val: time.Now()},
				{Name: "info.state", Val: final.State},
			})
		})
	})
}

// holdReturnedTask holds the task a recorded answer returns (if it is one the simulator knows).
func (h *harness) holdReturnedTask(body []byte, d time.Duration, vm string) {
	m := taskRefPattern.FindSubmatch(body)
	if m == nil {
		return
	}
	if t, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "Task", Value: string(m[1])}).(*simulator.Task); ok {
		h.holdTask(t, d, vm)
	}
}

// fileTask forwards a datastore file task (delete, copy, move) and holds it running for task_seconds.
func (h *harness) fileTask(w http.ResponseWriter, r *http.Request, body []byte, cfg faultConfig) {
	if cfg.TaskSeconds <= 0 {
		h.forward(w, r, body)
		return
	}
	rec := h.capture(r, body)
	h.holdReturnedTask(rec.Body.Bytes(), cfg.taskDuration(), "")
	copyRecorded(w, rec)
}

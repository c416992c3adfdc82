package main

// ReconfigVM_Task and AnswerVM: injected reconfigure failures, config.changeVersion, the IDE hot-plug
// refusal, and the locked-door question (msg.cdromdisconnect.locked).

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// The text real ESXi shows for msg.cdromdisconnect.locked.
const lockedDoorText = "The guest operating system has locked the CD-ROM door and is probably using the CD-ROM, " +
	"which can prevent the guest from recognizing media changes. If possible, eject the CD-ROM from inside " +
	"the guest before disconnecting. Disconnect anyway and overwrite the lock?"

const (
	answerYes = "0"
	answerNo  = "1"
)

type outcome struct {
	kind   string // "yes", "no", "cancel"
	reason string
}

type pendingQuestion struct {
	vm     types.ManagedObjectReference
	vmName string
	id     string
	device string
	task   *simulator.Task
	done   chan outcome // receives exactly one outcome, from whoever removes the question
}

type vmState struct {
	name          string
	poweredOn     bool
	devices       object.VirtualDeviceList
	changeVersion string
	extraConfig   map[string]string
}

func (h *harness) vmLock(id string) *sync.Mutex {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.vmLocks[id]
	if l == nil {
		l = new(sync.Mutex)
		h.vmLocks[id] = l
	}
	return l
}

func snapshotVM(vm *simulator.VirtualMachine) vmState {
	var s vmState
	simulator.Map.WithLock(vm, func() {
		s.name = vm.Name
		s.poweredOn = vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn
		s.extraConfig = map[string]string{}
		if vm.Config != nil {
			s.devices = append(object.VirtualDeviceList{}, vm.Config.Hardware.Device...)
			s.changeVersion = vm.Config.ChangeVersion
			for _, o := range vm.Config.ExtraConfig {
				ov := o.GetOptionValue()
				s.extraConfig[ov.Key] = fmt.Sprint(ov.Value)
			}
		}
	})
	return s
}

func (h *harness) reconfigure(w http.ResponseWriter, r *http.Request, body []byte, req *types.ReconfigVM_Task) {
	vm, ok := simulator.Map.Get(req.This).(*simulator.VirtualMachine)
	if !ok {
		h.forward(w, r, body)
		return
	}
	lock := h.vmLock(req.This.Value)
	lock.Lock()
	defer lock.Unlock()

	cfg := h.config()
	st := snapshotVM(vm)
	fail := func(counter string, fault types.BaseMethodFault, msg string) {
		h.countFault(counter)
		ref := h.failedTask(vm, st.name, fault, msg)
		writeResult(w, &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: ref}})
	}

	h.mu.Lock()
	q := h.questions[req.This.Value]
	h.mu.Unlock()
	if q != nil {
		fail(fReconfigInProgress, &types.TaskInProgress{Task: q.task.Self},
			"The operation is not allowed in the current state: another task (a reconfigure waiting for "+
				"an answer to question "+q.id+") is in progress.")
		return
	}
	if t := h.runningReconfigure(req.This.Value); t != nil {
		fail(fReconfigInProgress, &types.TaskInProgress{Task: t.Self},
			"The operation is not allowed in the current state: another task ("+t.Self.Value+") is in progress.")
		return
	}
	if fault, msg, ok := h.takeReconfigFailure(st.name); ok {
		fail(fReconfigFailed, fault, msg)
		return
	}
	if cfg.ChangeVersion && req.Spec.ChangeVersion != "" && req.Spec.ChangeVersion != st.changeVersion {
		fail(fConcurrentAccess, &types.ConcurrentAccess{},
			"Cannot complete operation due to concurrent modification by another operation.")
		return
	}
	if cfg.IDEHotplugRefused && st.poweredOn {
		if i, op, ok := ideHotplug(st.devices, &req.Spec); ok {
			fault := &types.InvalidDeviceOperation{BadOp: op}
			fault.DeviceIndex = int32(i)
			fault.Property = fmt.Sprintf("virtualDeviceSpec[%d]", i)
			fail(fIDERefused, fault, fmt.Sprintf("Invalid operation for device '%d': the device or operation "+
				"specified is not supported while the virtual machine is powered on (IDE devices cannot be "+
				"hot-added or hot-removed).", i))
			return
		}
	}
	if cfg.LockedDoor.Enabled && st.poweredOn && matchesVM(cfg.LockedDoor.VMs, st.name) {
		if dev := lockedCdrom(st.devices, &req.Spec); dev != nil {
			if strings.EqualFold(st.extraConfig["cdrom.showIsoLockWarning"], "FALSE") &&
				strings.EqualFold(st.extraConfig["msg.autoanswer"], "TRUE") {
				// VMware KB 2144053: with both settings the VM answers the question itself.
				h.countFault(fQuestionsAutoAns)
			} else {
				h.askQuestion(w, vm, st, *req, deviceName(st.devices, dev), cfg.LockedDoor.TimeoutSeconds)
				return
			}
		}
	}

	rec := h.capture(r, body)
	if m := taskRefPattern.FindSubmatch(rec.Body.Bytes()); m != nil {
		ref := types.ManagedObjectReference{Type: "Task", Value: string(m[1])}
		if t, ok := simulator.Map.Get(ref).(*simulator.Task); ok {
			var state types.TaskInfoState
			simulator.Map.WithLock(t, func() { state = t.Info.State })
			if state == types.TaskInfoStateSuccess {
				h.afterReconfigure(vm, &req.Spec)
			}
			if cfg.TaskSeconds > 0 {
				h.holdTask(t, cfg.taskDuration(), req.This.Value)
			}
		}
	}
	copyRecorded(w, rec)
}

var taskRefPattern = regexp.MustCompile(`<returnval type="Task">([^<]+)</returnval>`)

func (h *harness) takeReconfigFailure(vmName string) (types.BaseMethodFault, string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := &h.cfg.ReconfigFailures
	if c.Count <= 0 || !matchesVM(c.VMs, vmName) {
		return nil, "", false
	}
	c.Count--
	msg := c.Message
	if msg == "" {
		msg = "Injected reconfigure failure (test harness)."
	}
	var fault types.BaseMethodFault
	switch c.Fault {
	case "SystemError":
		fault = &types.SystemError{Reason: msg}
	case "InvalidState":
		fault = &types.InvalidState{}
	case "TaskInProgress":
		fault = &types.TaskInProgress{}
	case "NotSupported":
		fault = &types.NotSupported{}
	case "ConcurrentAccess":
		fault = &types.ConcurrentAccess{}
	default:
		fault = &types.GenericVmConfigFault{Reason: msg}
	}
	return fault, msg, true
}

// afterReconfigure does what vSphere does after a successful reconfigure and vcsim 0.24 does not:
// merge extraConfig keys and bump config.changeVersion.
func (h *harness) afterReconfigure(vm *simulator.VirtualMachine, spec *types.VirtualMachineConfigSpec) {
	cfg := h.config()
	simulator.Map.WithLock(vm, func() {
		if cfg.ExtraConfigMerge && len(spec.ExtraConfig) > 0 {
			simulator.Map.Update(vm, []types.PropertyChange{
				{Name: "config.extraConfig", Val: mergeExtraConfig(vm.Config.ExtraConfig)},
			})
		}
		if cfg.ChangeVersion {
			simulator.Map.Update(vm, []types.PropertyChange{
				{Name: "config.changeVersion", Val: h.nextChangeVersion()},
			})
		}
	})
}

// mergeExtraConfig keeps one entry per key (the last value, at the first key's position) and drops keys
// set to an empty value.
func mergeExtraConfig(in []types.BaseOptionValue) []types.BaseOptionValue {
	index := map[string]int{}
	var out []types.BaseOptionValue
	for _, o := range in {
		ov := o.GetOptionValue()
		if i, ok := index[ov.Key]; ok {
			out[i] = o
			continue
		}
		index[ov.Key] = len(out)
		out = append(out, o)
	}
	kept := out[:0]
	for _, o := range out {
		v := o.GetOptionValue().Value
		if s, ok := v.(string); v == nil || (ok && s == "") {
			continue
		}
		kept = append(kept, o)
	}
	return kept
}

func (h *harness) nextChangeVersion() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := time.Now().UTC().Truncate(time.Microsecond)
	if !t.After(h.lastCV) {
		t = h.lastCV.Add(time.Microsecond)
	}
	h.lastCV = t
	return t.Format("2006-01-02T15:04:05.000000Z")
}

// stampChangeVersions gives every VM without one a config.changeVersion (vcsim sets none).
func (h *harness) stampChangeVersions() {
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		simulator.Map.WithLock(vm, func() {
			if vm.Config != nil && vm.Config.ChangeVersion == "" {
				simulator.Map.Update(vm, []types.PropertyChange{
					{Name: "config.changeVersion", Val: h.nextChangeVersion()},
				})
			}
		})
	}
}

// ideHotplug finds a device change that adds or removes an IDE controller or a device on one.
func ideHotplug(devices object.VirtualDeviceList, spec *types.VirtualMachineConfigSpec) (int, types.VirtualDeviceConfigSpecOperation, bool) {
	isIDE := func(key int32) bool {
		if d := devices.FindByKey(key); d != nil {
			_, ok := d.(*types.VirtualIDEController)
			return ok
		}
		for _, ch := range spec.DeviceChange {
			if d := ch.GetVirtualDeviceConfigSpec().Device; d != nil && d.GetVirtualDevice().Key == key {
				_, ok := d.(*types.VirtualIDEController)
				return ok
			}
		}
		return false
	}
	for i, ch := range spec.DeviceChange {
		ds := ch.GetVirtualDeviceConfigSpec()
		if ds.Device == nil || (ds.Operation != types.VirtualDeviceConfigSpecOperationAdd &&
			ds.Operation != types.VirtualDeviceConfigSpecOperationRemove) {
			continue
		}
		if _, ok := ds.Device.(*types.VirtualIDEController); ok {
			return i, ds.Operation, true
		}
		d := ds.Device.GetVirtualDevice()
		ckey := d.ControllerKey
		if ds.Operation == types.VirtualDeviceConfigSpecOperationRemove {
			if cur := devices.FindByKey(d.Key); cur != nil {
				ckey = cur.GetVirtualDevice().ControllerKey
			}
		}
		if isIDE(ckey) {
			return i, ds.Operation, true
		}
	}
	return 0, "", false
}

// lockedCdrom returns the connected CD-ROM whose media the spec changes or removes, if any.
func lockedCdrom(devices object.VirtualDeviceList, spec *types.VirtualMachineConfigSpec) *types.VirtualCdrom {
	for _, ch := range spec.DeviceChange {
		ds := ch.GetVirtualDeviceConfigSpec()
		cd, ok := ds.Device.(*types.VirtualCdrom)
		if !ok {
			continue
		}
		cur, ok := devices.FindByKey(cd.Key).(*types.VirtualCdrom)
		if !ok || cur.Connectable == nil || !cur.Connectable.Connected {
			continue
		}
		switch ds.Operation {
		case types.VirtualDeviceConfigSpecOperationRemove:
			return cur
		case types.VirtualDeviceConfigSpecOperationEdit:
			if backingChanged(cur.Backing, cd.Backing) || (cd.Connectable != nil && !cd.Connectable.Connected) {
				return cur
			}
		}
	}
	return nil
}

func backingChanged(cur, next types.BaseVirtualDeviceBackingInfo) bool {
	if next == nil {
		return false
	}
	if cur == nil || reflect.TypeOf(cur) != reflect.TypeOf(next) {
		return true
	}
	type fileBacking interface {
		GetVirtualDeviceFileBackingInfo() *types.VirtualDeviceFileBackingInfo
	}
	type deviceBacking interface {
		GetVirtualDeviceDeviceBackingInfo() *types.VirtualDeviceDeviceBackingInfo
	}
	if a, ok := cur.(fileBacking); ok {
		return a.GetVirtualDeviceFileBackingInfo().FileName != next.(fileBacking).GetVirtualDeviceFileBackingInfo().FileName
	}
	if a, ok := cur.(deviceBacking); ok {
		return a.GetVirtualDeviceDeviceBackingInfo().DeviceName != next.(deviceBacking).GetVirtualDeviceDeviceBackingInfo().DeviceName
	}
	return false
}

// deviceName gives the vmx-style name (ide1:0, sata0:1) used in ESXi's messages.
func deviceName(devices object.VirtualDeviceList, d types.BaseVirtualDevice) string {
	vd := d.GetVirtualDevice()
	unit := int32(0)
	if vd.UnitNumber != nil {
		unit = *vd.UnitNumber
	}
	switch c := devices.FindByKey(vd.ControllerKey).(type) {
	case *types.VirtualIDEController:
		return fmt.Sprintf("ide%d:%d", c.BusNumber, unit)
	case *types.VirtualAHCIController:
		return fmt.Sprintf("sata%d:%d", c.BusNumber, unit)
	case types.BaseVirtualSCSIController:
		return fmt.Sprintf("scsi%d:%d", c.GetVirtualSCSIController().BusNumber, unit)
	}
	return fmt.Sprintf("cdrom%d", vd.Key)
}

// ---- tasks ----

func (h *harness) newTask(vm mo.Reference, vmName string) *simulator.Task {
	t := simulator.CreateTask(vm, "reconfigVm", nil)
	simulator.Map.WithLock(t, func() {
		simulator.Map.Update(t, []types.PropertyChange{
			{Name: "info.entityName", Val: vmName},
			{Name: "info.startTime", Val: time.Now()},
			{Name: "info.state", Val: types.TaskInfoStateRunning},
		})
	})
	return t
}

func finishTask(t *simulator.Task, fault *types.LocalizedMethodFault) {
	state := types.TaskInfoStateSuccess
	var errVal interface{}
	if fault != nil {
		state = types.TaskInfoStateError
		errVal = *fault
	}
	simulator.Map.WithLock(t, func() {
		simulator.Map.Update(t, []types.PropertyChange{
			{Name: "info.completeTime", Val: time.Now()},
			{Name: "info.state", Val: state},
			{Name: "info.error", Val: errVal},
		})
	})
}

func localized(fault types.BaseMethodFault, msg string, key string) *types.LocalizedMethodFault {
	if key != "" {
		mf := fault.GetMethodFault()
		mf.FaultMessage = append(mf.FaultMessage, types.LocalizableMessage{Key: key, Message: msg})
	}
	return &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
}

func (h *harness) failedTask(vm mo.Reference, vmName string, fault types.BaseMethodFault, msg string) types.ManagedObjectReference {
	t := h.newTask(vm, vmName)
	if tip, ok := fault.(*types.TaskInProgress); ok && tip.Task.Value == "" {
		// vCenter always names the task in progress; an empty reference is unreadable for pyVmomi.
		tip.Task = t.Self
	}
	finishTask(t, localized(fault, msg, ""))
	return t.Self
}

// ---- the locked-door question ----

func (h *harness) askQuestion(w http.ResponseWriter, vm *simulator.VirtualMachine, st vmState,
	req types.ReconfigVM_Task, device string, timeoutSeconds float64) {
	t := h.newTask(vm, st.name)
	h.mu.Lock()
	h.qseq++
	q := &pendingQuestion{
		vm:     vm.Self,
		vmName: st.name,
		id:     fmt.Sprintf("_vmx%d", h.qseq),
		device: device,
		task:   t,
		done:   make(chan outcome, 1),
	}
	h.questions[vm.Self.Value] = q
	h.ctr.Faults[fQuestionsAsked]++
	h.mu.Unlock()
	h.logf("fault: question %s on %s (%s)", q.id, st.name, device)

	info := &types.VirtualMachineQuestionInfo{
		Id:   q.id,
		Text: lockedDoorText,
		Choice: types.ChoiceOption{
			OptionType: types.OptionType{ValueIsReadonly: types.NewBool(false)},
			ChoiceInfo: []types.BaseElementDescription{
				&types.ElementDescription{Description: types.Description{Label: "button.yes", Summary: "Yes"}, Key: answerYes},
				&types.ElementDescription{Description: types.Description{Label: "button.no", Summary: "No"}, Key: answerNo},
			},
			DefaultIndex: 1,
		},
		Message: []types.VirtualMachineMessage{{Id: "msg.cdromdisconnect.locked", Text: lockedDoorText}},
	}
	setQuestion(vm, info)
	go h.waitForAnswer(vm, q, req, time.Duration(timeoutSeconds*float64(time.Second)))
	writeResult(w, &methods.ReconfigVM_TaskBody{Res: &types.ReconfigVM_TaskResponse{Returnval: t.Self}})
}

func setQuestion(vm *simulator.VirtualMachine, info *types.VirtualMachineQuestionInfo) {
	var val interface{}
	if info != nil {
		val = info
	}
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.question", Val: val},
			{Name: "summary.runtime.question", Val: val},
		})
	})
}

// removeQuestion takes q out of the pending set; only the caller that succeeds reports its outcome.
func (h *harness) removeQuestion(q *pendingQuestion) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.questions[q.vm.Value] != q {
		return false
	}
	delete(h.questions, q.vm.Value)
	return true
}

func (h *harness) waitForAnswer(vm *simulator.VirtualMachine, q *pendingQuestion, req types.ReconfigVM_Task, timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var out outcome
	select {
	case out = <-q.done:
	case <-timer.C:
		if h.removeQuestion(q) {
			setQuestion(vm, nil)
			h.countFault(fQuestionsTimedOut)
			msg := fmt.Sprintf("msg.disk.onlineConnectFail: Connection control operation failed for disk '%s'. "+
				"The guest kept the CD-ROM door locked and question %s (msg.cdromdisconnect.locked) was not "+
				"answered within %s.", q.device, q.id, timeout)
			finishTask(q.task, localized(&types.GenericVmConfigFault{Reason: msg}, msg, "msg.disk.onlineConnectFail"))
			return
		}
		out = <-q.done
	}
	switch out.kind {
	case "yes":
		h.applyAnswered(vm, q, req)
	case "no":
		msg := fmt.Sprintf("msg.cdromdisconnect.locked: the guest has locked the CD-ROM door of '%s' and the "+
			"question was answered 'No'; the device was not changed.", q.device)
		finishTask(q.task, localized(&types.GenericVmConfigFault{Reason: msg}, msg, "msg.cdromdisconnect.locked"))
	default:
		finishTask(q.task, localized(&types.SystemError{Reason: out.reason}, out.reason, ""))
	}
}

// applyAnswered runs the reconfigure through the simulator's own code (in process) once "yes" is given.
func (h *harness) applyAnswered(vm *simulator.VirtualMachine, q *pendingQuestion, req types.ReconfigVM_Task) {
	lock := h.vmLock(vm.Self.Value)
	lock.Lock()
	defer lock.Unlock()
	res, err := methods.ReconfigVM_Task(context.Background(), h.client, &req)
	if err != nil {
		finishTask(q.task, localized(&types.SystemError{Reason: err.Error()}, err.Error(), ""))
		return
	}
	inner, ok := simulator.Map.Get(res.Returnval).(*simulator.Task)
	if !ok {
		finishTask(q.task, localized(&types.SystemError{Reason: "reconfigure task vanished"}, "reconfigure task vanished", ""))
		return
	}
	var info types.TaskInfo
	simulator.Map.WithLock(inner, func() { info = inner.Info })
	if info.State == types.TaskInfoStateSuccess {
		h.afterReconfigure(vm, &req.Spec)
		finishTask(q.task, nil)
		return
	}
	if info.Error != nil {
		finishTask(q.task, info.Error)
		return
	}
	finishTask(q.task, localized(&types.SystemError{Reason: "reconfigure did not complete"}, "reconfigure did not complete", ""))
}

func (h *harness) answer(w http.ResponseWriter, req *types.AnswerVM) {
	h.mu.Lock()
	q := h.questions[req.This.Value]
	h.mu.Unlock()
	if q == nil || q.id != req.QuestionId {
		writeFault(w, "A specified parameter was not correct: questionId",
			&types.InvalidArgument{InvalidProperty: "questionId"})
		return
	}
	if req.AnswerChoice != answerYes && req.AnswerChoice != answerNo {
		writeFault(w, "A specified parameter was not correct: answerChoice",
			&types.InvalidArgument{InvalidProperty: "answerChoice"})
		return
	}
	if !h.removeQuestion(q) {
		writeFault(w, "A specified parameter was not correct: questionId",
			&types.InvalidArgument{InvalidProperty: "questionId"})
		return
	}
	if vm, ok := simulator.Map.Get(q.vm).(*simulator.VirtualMachine); ok {
		setQuestion(vm, nil)
	}
	if req.AnswerChoice == answerYes {
		h.countFault(fQuestionsYes)
		q.done <- outcome{kind: "yes"}
	} else {
		h.countFault(fQuestionsNo)
		q.done <- outcome{kind: "no"}
	}
	writeResult(w, &methods.AnswerVMBody{Res: &types.AnswerVMResponse{}})
}

func (h *harness) pendingQuestions() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []map[string]string{}
	for _, q := range h.questions {
		out = append(out, map[string]string{"vm": q.vm.Value, "vm_name": q.vmName, "id": q.id, "task": q.task.Self.Value, "device": q.device})
	}
	return out
}

func (h *harness) cancelQuestions(reason string) {
	h.mu.Lock()
	qs := make([]*pendingQuestion, 0, len(h.questions))
	for _, q := range h.questions {
		qs = append(qs, q)
	}
	h.mu.Unlock()
	for _, q := range qs {
		if h.removeQuestion(q) {
			if vm, ok := simulator.Map.Get(q.vm).(*simulator.VirtualMachine); ok {
				setQuestion(vm, nil)
			}
			q.done <- outcome{kind: "cancel", reason: reason}
		}
	}
}

package main

// Fault 12, refused_versions: a server that no longer serves an API version. vSphere answers a SOAP request in a
// namespace version it does not serve with HTTP 500 and a fault that has a faultstring and no detail, e.g.
// "Request version 'urn:pbm/6.7' and namespace 'urn:pbm' are not supported" (vSphere 5.5 asked in pbm 6.7:
// cloudfoundry/bosh-deployment#374, vmware/terraform-provider-vsphere#1326); vCenter 6.5 refused urn:vim2
// ("Unsupported namespace", sexibytes/sexigraf#102). A client then reads /sdk/vimServiceVersions.xml, as pyVmomi's
// SmartConnect does first. vcsim 0.24 answers every version.

import (
	"net/http"
	"strings"

	"github.com/vmware/govmomi/vim25/xml"
)

// refusedVersion: the vim25 version the request's SOAPAction names, when it is one of refused; else "".
func refusedVersion(r *http.Request, refused []string) string {
	action := strings.Trim(r.Header.Get("SOAPAction"), `"`)
	version := strings.TrimPrefix(action, "urn:vim25/")
	if version == action {
		return ""
	}
	for _, v := range refused {
		if v == version {
			return version
		}
	}
	return ""
}

// writeVersionFault answers as vSphere does: HTTP 500, a SOAP fault without detail (pyVmomi reads it as a
// vmodl.RuntimeFault whose msg is the faultstring).
func writeVersionFault(w http.ResponseWriter, version string) {
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte("Request version 'urn:vim25/"+version+"' and namespace 'urn:vim25' are not supported"))
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(xml.Header + `<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">` +
		`<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>` + msg.String() +
		`</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>`))
}

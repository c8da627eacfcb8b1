{{/*
Shared pieces of the pvnfs templates.
*/}}

{{/* The name prefix of every object: "pvnfs" for a release named pvnfs, else "<release>-pvnfs". */}}
{{- define "pvnfs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The namespace of the driver and of the volumes' servers. */}}
{{- define "pvnfs.namespace" -}}
{{- required "namespace.name is required" .Values.namespace.name -}}
{{- end -}}

{{/* Labels of every object the chart makes. */}}
{{- define "pvnfs.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: pvnfs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
Selector labels of one component's pods (dict "root" $ "component" "controller").
They must not match the volumes' own objects, which carry
app.kubernetes.io/instance=pvnfs-<volume ID> and their own components.
*/}}
{{- define "pvnfs.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
An image reference (dict "root" $ "image" .Values.images.x): registry/repository
then @digest, or :tag (the chart's appVersion when the tag is empty).
*/}}
{{- define "pvnfs.image" -}}
{{- $registry := .root.Values.imageRegistry | default .image.registry -}}
{{- $ref := .image.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" $registry .image.repository -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The socket directory of the node plugin on the host, below kubelet's plugins directory. */}}
{{- define "pvnfs.nodeSocketDir" -}}
{{- printf "%s/plugins/%s" (.Values.kubeletDir | trimSuffix "/") .Values.csiDriver.name -}}
{{- end -}}

{{/*
Expand the name of the chart.
*/}}
{{- define "peerdb-maintenance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name of the chart's resources, computed from (dict "values" "context"): the same from this
chart's templates and from a parent chart that includes the init container, so the names of the
ConfigMap and Secret the container refers to always match the ones this chart creates. The base name is
the chart's own name, never the parent's.
*/}}
{{- define "peerdb-maintenance.fullnameOf" -}}
{{- if .values.fullnameOverride }}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "peerdb-maintenance" .values.nameOverride }}
{{- if contains $name .context.Release.Name }}
{{- .context.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .context.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Fully qualified name, from this chart's own context.
*/}}
{{- define "peerdb-maintenance.fullname" -}}
{{- include "peerdb-maintenance.fullnameOf" (dict "values" .Values "context" .) }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "peerdb-maintenance.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "peerdb-maintenance.labels" -}}
helm.sh/chart: {{ include "peerdb-maintenance.chart" . }}
{{ include "peerdb-maintenance.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "peerdb-maintenance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "peerdb-maintenance.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Names of the resources the gate containers refer to, from (dict "values" "context").
*/}}
{{- define "peerdb-maintenance.tasksConfigMapName" -}}
{{- printf "%s-tasks" (include "peerdb-maintenance.fullnameOf" .) }}
{{- end }}

{{- define "peerdb-maintenance.redisSecretName" -}}
{{- printf "%s-redis" (include "peerdb-maintenance.fullnameOf" .) }}
{{- end }}

{{- define "peerdb-maintenance.hooksName" -}}
{{- printf "%s-hooks" (include "peerdb-maintenance.fullnameOf" .) }}
{{- end }}

{{/*
The appVersion of this chart, from (dict "values" "context"). From a parent chart's context it is found
among the parent's subcharts as the one whose values are the values passed in (so an alias works too).
*/}}
{{- define "peerdb-maintenance.appVersion" -}}
{{- $want := toJson .values }}
{{- $found := "" }}
{{- if eq (toJson .context.Values) $want }}
{{- $found = .context.Chart.AppVersion }}
{{- else }}
{{- range $name, $sub := .context.Subcharts }}
{{- if and (not $found) (eq (toJson $sub.Values) $want) }}
{{- $found = $sub.Chart.AppVersion }}
{{- end }}
{{- end }}
{{- end }}
{{- required "peerdb-maintenance: set image.tag: the chart's appVersion is not visible from the values passed in" $found }}
{{- end }}

{{/*
Image reference, from (dict "values" "context").
*/}}
{{- define "peerdb-maintenance.image" -}}
{{- $image := .values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository ($image.tag | default (include "peerdb-maintenance.appVersion" .)) }}
{{- end }}
{{- end }}

{{/*
A task list as the content of a task file.
*/}}
{{- define "peerdb-maintenance.taskFile" -}}
{{- dict "tasks" (. | default list) | toYaml }}
{{- end }}

{{/*
Hook annotations, from (dict "events" "weight" "deletePolicy").
*/}}
{{- define "peerdb-maintenance.hookAnnotations" -}}
helm.sh/hook: {{ join "," .events | quote }}
helm.sh/hook-weight: {{ .weight | toString | quote }}
helm.sh/hook-delete-policy: {{ .deletePolicy | quote }}
{{- end }}

{{/*
Pod-level settings shared by the hook Jobs and the test pod.
*/}}
{{- define "peerdb-maintenance.podSpecCommon" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The wrapped mode: the gate runs inside another image, in front of that image's own program (PeerDB's
catalog migrator, peerdb-server with PEERDB_MIGRATIONS_ONLY=true, lives in PeerDB's image; the gate's
image is distroless). Call both templates from your chart with this chart's values and your root context:

  initContainers:
    {{- include "peerdb-maintenance.wrappedInitContainers" (dict "values" (index .Values "peerdb-maintenance") "context" $) | nindent 8 }}
  volumes:
    {{- include "peerdb-maintenance.wrappedVolumes" (dict "values" (index .Values "peerdb-maintenance") "context" $) | nindent 8 }}

wrapped.gateSource copy: an init container from the gate's image copies the binary into an emptyDir
(peerdb-maintenance install); imageVolume: the gate's image is mounted read-only as a Kubernetes image
volume (volumes[].image, on clusters that have them) and nothing is copied. Either way the wrapped
init container runs <wrapped.gateDir>/peerdb-maintenance -- <wrapped.command> <wrapped.args>, or, with
no wrapped.command, the task list (tasks) with exec tasks naming the image's programs. Setting both is
refused, since the tasks would not run there; the chart's own migrate hook passes "commandOnly" true: it
always runs wrapped.command, and the top-level tasks are then those of the other gates (hooks.pre).
*/}}
{{- define "peerdb-maintenance.wrappedInitContainers" -}}
{{- include "peerdb-maintenance.wrappedInitContainersUntrimmed" . | trim }}
{{- end }}

{{- define "peerdb-maintenance.wrappedInitContainersUntrimmed" -}}
{{- $v := .values }}
{{- $w := $v.wrapped }}
{{- if $v.gate.dryRun }}
{{- fail "peerdb-maintenance: gate.dryRun cannot be used by the wrapped init container: a dry run exits 0, so the main container would start with maintenance not done" }}
{{- end }}
{{- if and (not $w.command) (not $v.tasks) }}
{{- fail "peerdb-maintenance: the wrapped init container needs wrapped.command (the program to run once, for example [/home/peerdb/peerdb-server]) or tasks" }}
{{- end }}
{{- if and $w.command $v.tasks (not .commandOnly) }}
{{- fail "peerdb-maintenance: set wrapped.command or tasks for the wrapped init container, not both (the gate takes a task file or a command after --)" }}
{{- end }}
{{- if not (has $w.gateSource (list "copy" "imageVolume")) }}
{{- fail "peerdb-maintenance: wrapped.gateSource must be copy or imageVolume" }}
{{- end }}
{{- $ctx := dict "values" $v "context" .context "gate" $w.gate "tasksKey" "tasks.yaml" }}
{{- with .redisSecret }}
{{- $_ := set $ctx "redisSecret" . }}
{{- end }}
{{- if hasKey . "failureCooldown" }}
{{- $_ := set $ctx "failureCooldown" .failureCooldown }}
{{- end }}
{{- if not $w.command }}
{{- $_ := set $ctx "tasksConfigMap" (include "peerdb-maintenance.tasksConfigMapName" .) }}
{{- end -}}
{{- if eq $w.gateSource "copy" }}
- name: peerdb-maintenance-install
  image: {{ include "peerdb-maintenance.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: [install, {{ $w.gateDir | quote }}]
  volumeMounts:
    - name: peerdb-maintenance-bin
      mountPath: {{ $w.gateDir | quote }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}
- name: {{ $w.name }}
  image: {{ include "peerdb-maintenance.wrappedImage" . | quote }}
  imagePullPolicy: {{ $w.image.pullPolicy }}
  command: [{{ printf "%s/peerdb-maintenance" $w.gateDir | quote }}]
  {{- if $w.command }}
  args:
    - "--"
    {{- toYaml (concat $w.command $w.args) | nindent 4 }}
  {{- end }}
  env:
    {{- include "peerdb-maintenance.env" $ctx | trim | nindent 4 }}
    {{- with $w.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $envFrom := concat ($v.extraEnvFrom | default list) ($w.envFrom | default list) }}
  {{- with $envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: peerdb-maintenance-bin
      mountPath: {{ $w.gateDir | quote }}
      readOnly: true
    {{- with include "peerdb-maintenance.volumeMounts" $ctx }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- with $w.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $w.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $w.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/*
peerdb-maintenance.wrappedVolumes renders the pod volumes of the wrapped mode: the gate's directory (an
emptyDir, or the gate's image as an image volume), the task file when tasks are used, the Redis TLS Secret
and extraVolumes. Call it with the same dict as the init containers.
*/}}
{{- define "peerdb-maintenance.wrappedVolumes" -}}
{{- $v := .values -}}
- name: peerdb-maintenance-bin
  {{- if eq $v.wrapped.gateSource "imageVolume" }}
  image:
    reference: {{ include "peerdb-maintenance.image" . | quote }}
    pullPolicy: {{ $v.image.pullPolicy }}
  {{- else }}
  emptyDir:
    sizeLimit: 64Mi
  {{- end }}
{{- if not $v.wrapped.command }}
- name: peerdb-maintenance-tasks
  configMap:
    name: {{ include "peerdb-maintenance.tasksConfigMapName" . }}
{{- end }}
{{- include "peerdb-maintenance.supportVolumes" . }}
{{- end }}

{{/*
The image of the wrapped init container, from (dict "values" "context"): wrapped.image, whose tag
defaults to stable-<the deployment version> as PeerDB tags its images.
*/}}
{{- define "peerdb-maintenance.wrappedImage" -}}
{{- $image := .values.wrapped.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- $version := .values.deploymentVersion | default .context.Chart.AppVersion | required "peerdb-maintenance: set deploymentVersion" }}
{{- printf "%s:%s" $image.repository ($image.tag | default (printf "stable-%s" $version)) }}
{{- end }}
{{- end }}

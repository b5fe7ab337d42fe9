{{/*
peerdb-maintenance.initContainer renders one initContainer item running the gate in front of your
container. Call it from your own chart with this chart's values and your root context:

  initContainers:
    {{- include "peerdb-maintenance.initContainer" (dict "values" (index .Values "peerdb-maintenance") "context" $) | nindent 8 }}
  volumes:
    {{- include "peerdb-maintenance.volume" (dict "values" (index .Values "peerdb-maintenance") "context" $) | nindent 8 }}

PEERDB_DEPLOYMENT_VERSION defaults to the appVersion of the context's chart, so your chart's version.
MAINTENANCE_FORCE is never set here: in an init container every replica would run the tasks again.
Neither is MAINTENANCE_DRY_RUN: a dry run exits 0, so the main container would start with maintenance not
done. gate.dryRun set for an init container is a template error.
*/}}
{{- define "peerdb-maintenance.initContainer" -}}
{{- if .values.gate.dryRun }}
{{- fail "peerdb-maintenance: gate.dryRun cannot be used by the init container: a dry run exits 0, so the main container would start with maintenance not done. Run the dry run as a Job instead (for example this chart alone with hooks.pre.enabled=true and gate.dryRun=true, or kubectl create job running peerdb-maintenance run --dry-run)" }}
{{- end }}
{{- include "peerdb-maintenance.container" (dict
    "values" .values
    "context" .context
    "gate" .values.gate.name
    "tasksConfigMap" (include "peerdb-maintenance.tasksConfigMapName" .)
    "tasksKey" "tasks.yaml") }}
{{- end }}

{{/*
peerdb-maintenance.volume renders the pod volumes the init container mounts: the tasks ConfigMap, the
Redis TLS Secret when configured, and extraVolumes. Call it with the same dict as the init container.
*/}}
{{- define "peerdb-maintenance.volume" -}}
- name: peerdb-maintenance-tasks
  configMap:
    name: {{ .configMap | default (include "peerdb-maintenance.tasksConfigMapName" .) }}
{{- include "peerdb-maintenance.supportVolumes" . }}
{{- end }}

{{/*
The volumes besides the task file: the Redis TLS Secret and extraVolumes, from (dict "values").
*/}}
{{- define "peerdb-maintenance.supportVolumes" -}}
{{- with .values.redis.tls.existingSecret }}
- name: peerdb-maintenance-redis-tls
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
peerdb-maintenance.container renders one container item running the gate, from a dict:
  values, context  this chart's values and the root context of the rendering chart
  name             container name (default peerdb-maintenance)
  gate             gate name (MAINTENANCE_NAME)
  tasksConfigMap   ConfigMap holding the task file; empty: no task file
  tasksKey         key of the task file in that ConfigMap
  redisSecret      Secret holding redis-url when redis.existingSecret is empty (default: the chart's)
  force            set MAINTENANCE_FORCE (hook Jobs only)
  dryRun           set MAINTENANCE_DRY_RUN (hook Jobs only)
  failureCooldown  MAINTENANCE_FAILURE_COOLDOWN instead of gate.failureCooldown (hook Jobs: hooks.failureCooldown)
  args             container arguments (default none: the run command)
*/}}
{{- define "peerdb-maintenance.container" -}}
{{- $v := .values }}
{{- $tls := $v.redis.tls }}
{{- $tlsDir := "/etc/peerdb-maintenance/redis-tls" -}}
- name: {{ .name | default "peerdb-maintenance" }}
  image: {{ include "peerdb-maintenance.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- with .args }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    {{- include "peerdb-maintenance.env" . | trim | nindent 4 }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or .tasksConfigMap $tls.existingSecret $v.extraVolumeMounts }}
  volumeMounts:
    {{- include "peerdb-maintenance.volumeMounts" . | trim | nindent 4 }}
  {{- end }}
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

{{/*
peerdb-maintenance.env renders the gate's environment variables (list items), from the dict of
peerdb-maintenance.container.
*/}}
{{- define "peerdb-maintenance.env" -}}
{{- $v := .values }}
{{- $tls := $v.redis.tls }}
{{- $tlsDir := "/etc/peerdb-maintenance/redis-tls" -}}
- name: PEERDB_DEPLOYMENT_VERSION
  value: {{ $v.deploymentVersion | default .context.Chart.AppVersion | required "peerdb-maintenance: set deploymentVersion" | quote }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if $v.redis.existingSecret }}
      name: {{ $v.redis.existingSecret }}
      key: {{ $v.redis.existingSecretKey }}
      {{- else }}
      name: {{ .redisSecret | default (include "peerdb-maintenance.redisSecretName" .) }}
      key: redis-url
      {{- end }}
- name: REDIS_MODE
  value: {{ $v.redis.mode | quote }}
{{- if $tls.existingSecret }}
{{- if $tls.caKey }}
- name: REDIS_CA_FILE
  value: {{ printf "%s/%s" $tlsDir $tls.caKey | quote }}
{{- end }}
{{- if $tls.certKey }}
- name: REDIS_CERT_FILE
  value: {{ printf "%s/%s" $tlsDir $tls.certKey | quote }}
{{- end }}
{{- if $tls.keyKey }}
- name: REDIS_KEY_FILE
  value: {{ printf "%s/%s" $tlsDir $tls.keyKey | quote }}
{{- end }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: MAINTENANCE_NAME
  value: {{ .gate | quote }}
- name: MAINTENANCE_KEY_PREFIX
  value: {{ $v.gate.keyPrefix | quote }}
- name: MAINTENANCE_LOCK_TTL
  value: {{ $v.gate.lockTTL | quote }}
- name: MAINTENANCE_WAIT_TIMEOUT
  value: {{ $v.gate.waitTimeout | quote }}
- name: MAINTENANCE_CONNECT_TIMEOUT
  value: {{ $v.gate.connectTimeout | quote }}
- name: MAINTENANCE_DOWNGRADE
  value: {{ $v.gate.downgrade | quote }}
- name: MAINTENANCE_FAILURE_COOLDOWN
  value: {{ (hasKey . "failureCooldown" | ternary .failureCooldown $v.gate.failureCooldown) | toString | quote }}
{{- if .dryRun }}
- name: MAINTENANCE_DRY_RUN
  value: "true"
{{- end }}
{{- if .tasksConfigMap }}
- name: MAINTENANCE_TASKS_FILE
  value: {{ printf "/etc/peerdb-maintenance/tasks/%s" .tasksKey | quote }}
{{- end }}
{{- if .force }}
- name: MAINTENANCE_FORCE
  value: "true"
{{- end }}
- name: LOG_FORMAT
  value: {{ $v.log.format | quote }}
- name: LOG_LEVEL
  value: {{ $v.log.level | quote }}
{{- with $v.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/*
peerdb-maintenance.volumeMounts renders the gate's volume mounts (list items): the task file, the Redis
TLS Secret and extraVolumeMounts, from the dict of peerdb-maintenance.container.
*/}}
{{- define "peerdb-maintenance.volumeMounts" -}}
{{- $v := .values }}
{{- $tls := $v.redis.tls }}
{{- $tlsDir := "/etc/peerdb-maintenance/redis-tls" -}}
{{- if .tasksConfigMap }}
- name: peerdb-maintenance-tasks
  mountPath: /etc/peerdb-maintenance/tasks
  readOnly: true
{{- end }}
{{- if $tls.existingSecret }}
- name: peerdb-maintenance-redis-tls
  mountPath: {{ $tlsDir }}
  readOnly: true
{{- end }}
{{- with $v.extraVolumeMounts }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/* Names, labels and the facts every template shares. */}}

{{- define "mlflowkit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* The topology's facts (topologies.yaml, generated from mlflowkit/topology.py); fails on an unknown name. */}}
{{- define "mlflowkit.topology" -}}
{{- $all := .Files.Get "topologies.yaml" | fromYaml -}}
{{- if not (hasKey $all .Values.topology) -}}
{{- fail (printf "topology %q is not one the chart runs. Hint: set topology to one of: %s" .Values.topology (keys $all | sortAlpha | join ", ")) -}}
{{- end -}}
{{- index $all .Values.topology | toYaml -}}
{{- end -}}

{{/* The Service (and in-cluster host) name of a component: mlflow, artifacts, serve, postgres, s3. */}}
{{- define "mlflowkit.name" -}}
{{- printf "%s-%s" (include "mlflowkit.fullname" .root) .component -}}
{{- end -}}

{{- define "mlflowkit.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlflowkit.labels" -}}
{{ include "mlflowkit.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
mlflowkit.org/topology: {{ .root.Values.topology }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "mlflowkit.image" -}}
{{- printf "%s%s" .root.Values.images.registry (index .root.Values.images .image) -}}
{{- end -}}

{{/* Secrets: the user's existing one, or the chart's generated one (templates/secrets.yaml). */}}
{{- define "mlflowkit.postgresSecret" -}}
{{- .Values.postgresql.existingSecret | default (printf "%s-postgres" (include "mlflowkit.fullname" .)) -}}
{{- end -}}
{{- define "mlflowkit.s3Secret" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "mlflowkit.fullname" .)) -}}
{{- end -}}
{{- define "mlflowkit.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "mlflowkit.fullname" .)) -}}
{{- end -}}

{{/* The number of pods of a server pool: more than one means shared auth state and a PodDisruptionBudget. */}}
{{- define "mlflowkit.poolMax" -}}
{{- if .autoscaling.enabled -}}{{ .autoscaling.maxReplicas }}{{- else -}}{{ .replicas }}{{- end -}}
{{- end -}}

{{/* "true" when auth is on and a server pool can have more than one pod: every pod then reads one users
database (in PostgreSQL) and signs with one Flask secret, instead of a volume of its own. */}}
{{- define "mlflowkit.authShared" -}}
{{- $topo := include "mlflowkit.topology" . | fromYaml -}}
{{- $many := gt (int (include "mlflowkit.poolMax" .Values.tracking)) 1 -}}
{{- if and (has "artifacts" $topo.servers) (gt (int (include "mlflowkit.poolMax" .Values.artifacts)) 1) -}}{{- $many = true -}}{{- end -}}
{{- if and .Values.auth.enabled (or $many $topo.replicated) -}}true{{- end -}}
{{- end -}}

{{/* A replicated topology (topologies.yaml `replicated`): highly available stores are the cluster's, not the
chart's single pods, unless the user says they know (acknowledgeSinglePodStores); and PgBouncer's connection
budget (Topology.budget in mlflowkit/topology.py, the same sums) must fit PgBouncer and PostgreSQL. Every template
that renders a replicated topology's servers includes this. */}}
{{- define "mlflowkit.replicatedChecks" -}}
{{- $topo := include "mlflowkit.topology" . | fromYaml -}}
{{- if $topo.replicated -}}
{{- $inChart := list -}}
{{- if .Values.postgresql.enabled }}{{ $inChart = append $inChart "postgresql" }}{{ end -}}
{{- if .Values.s3.enabled }}{{ $inChart = append $inChart "s3" }}{{ end -}}
{{- if and $inChart (not .Values.acknowledgeSinglePodStores) -}}
{{- fail (printf "topology %s needs highly available PostgreSQL and S3 from outside the chart (an operator's or a cloud's); the in-chart %s run as one pod each. Hint: set %s, or acknowledgeSinglePodStores=true for a trial (docs/kubernetes.md)" .Values.topology (join " and " $inChart) (join " and " (list "postgresql.enabled=false with postgresql.external.host" "s3.enabled=false with s3.external.endpoint"))) -}}
{{- end -}}
{{- end -}}
{{- with $topo.pooling -}}
{{- if ne (int (include "mlflowkit.postgresPort" $)) 5432 -}}
{{- fail (printf "the kit's PgBouncer image connects to PostgreSQL on port 5432, not %s. Hint: expose the database on 5432 (stacks/images/pgbouncer/entrypoint.sh)" (include "mlflowkit.postgresPort" $)) -}}
{{- end -}}
{{- $b := $.Values.pgbouncer -}}
{{- $perEngine := add $b.mlflowPoolSize $b.mlflowMaxOverflow -}}
{{- $clients := 0 -}}
{{- $parts := list -}}
{{- range $server, $engines := .engines -}}
{{- $v := index $.Values (ternary "tracking" "artifacts" (eq $server "mlflow")) -}}
{{- $pods := int (include "mlflowkit.poolMax" $v) -}}
{{- $e := sub (int $engines) (ternary 0 1 $.Values.auth.enabled) -}}
{{- $clients = add $clients (mul $pods $v.workers $e $perEngine) -}}
{{- $parts = append $parts (printf "%d %s pod(s) x %d worker(s) x %d pool(s) x %d" $pods $server (int $v.workers) $e $perEngine) -}}
{{- end -}}
{{- if gt $clients (int $b.maxClientConn) -}}
{{- fail (printf "connection budget: the MLflow servers may open %d database connections (%s), PgBouncer accepts %d (pgbouncer.maxClientConn). Hint: raise pgbouncer.maxClientConn, or lower the pools' pods, workers or pgbouncer.mlflowPoolSize/mlflowMaxOverflow" $clients (join " + " $parts) (int $b.maxClientConn)) -}}
{{- end -}}
{{- $servers := add (mul $b.replicas $b.maxDbConnections .databases) .direct -}}
{{- $limit := sub $.Values.postgresql.maxConnections .reserved -}}
{{- if gt $servers $limit -}}
{{- fail (printf "connection budget: PgBouncer (%d pod(s) x %d per database x %d databases) and %d direct clients may open %d connections to PostgreSQL, whose max_connections %d less %d reserved takes %d. Hint: raise postgresql.maxConnections (the server's own setting: state an external server's real value), or lower pgbouncer.replicas or pgbouncer.maxDbConnections" (int $b.replicas) (int $b.maxDbConnections) (int .databases) (int .direct) $servers (int $.Values.postgresql.maxConnections) (int .reserved) $limit) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mlflowkit.pgbouncerHost" -}}
{{- include "mlflowkit.name" (dict "root" . "component" "pgbouncer") -}}
{{- end -}}

{{- define "mlflowkit.postgresHost" -}}
{{- if .Values.postgresql.enabled -}}{{ include "mlflowkit.name" (dict "root" . "component" "postgres") }}
{{- else -}}{{ required "postgresql.external.host is required when postgresql.enabled is false" .Values.postgresql.external.host }}{{- end -}}
{{- end -}}
{{- define "mlflowkit.postgresPort" -}}
{{- if .Values.postgresql.enabled -}}5432{{- else -}}{{ .Values.postgresql.external.port }}{{- end -}}
{{- end -}}

{{- define "mlflowkit.s3Endpoint" -}}
{{- if .Values.s3.enabled -}}{{ printf "http://%s:8333" (include "mlflowkit.name" (dict "root" . "component" "s3")) }}
{{- else -}}{{ required "s3.external.endpoint is required when s3.enabled is false" .Values.s3.external.endpoint }}{{- end -}}
{{- end -}}

{{/* Environment of a PostgreSQL client (stacks/common/postgres.yaml: the store URI composed from parts, the
password from the Secret, never on a command line). */}}
{{- define "mlflowkit.env.backend" -}}
- name: POSTGRES_USER
  value: {{ .Values.postgresql.username | quote }}
- name: POSTGRES_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.postgresSecret" . }}, key: POSTGRES_PASSWORD}}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@%s:%s/%s" (include "mlflowkit.postgresHost" .) (include "mlflowkit.postgresPort" .) .Values.postgresql.database | quote }}
{{- end -}}

{{/* A replicated topology's MLflow server: its store through PgBouncer, the users database of every pod (libpq
takes user, password and database from PG*: the ini in the ConfigMap holds no secret), job execution off (MLflow's
job runner keeps a per-process queue: every replica would run its own) and a small pool per engine (the budget). */}}
{{- define "mlflowkit.env.pooled" -}}
{{- $db := .Values.postgresql.database -}}
- name: POSTGRES_USER
  value: {{ .Values.postgresql.username | quote }}
- name: POSTGRES_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.postgresSecret" . }}, key: POSTGRES_PASSWORD}}
{{- if .backend }}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@%s:6432/%s" (include "mlflowkit.pgbouncerHost" .) $db | quote }}
{{- end }}
- name: MLFLOW_SERVER_ENABLE_JOB_EXECUTION
  value: "false"
- name: MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS
  value: "false"
- name: MLFLOW_SQLALCHEMYSTORE_POOL_SIZE
  value: {{ .Values.pgbouncer.mlflowPoolSize | quote }}
- name: MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW
  value: {{ .Values.pgbouncer.mlflowMaxOverflow | quote }}
- name: MLFLOWKIT_DB_WAIT_SECONDS
  value: {{ .Values.pgbouncer.mlflowDbWaitSeconds | quote }}
- name: MLFLOW_AUTH_CONFIG_PATH
  value: /etc/mlflowkit-auth/basic_auth.ini
- name: PGUSER
  value: {{ .Values.postgresql.username | quote }}
- name: PGPASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.postgresSecret" . }}, key: POSTGRES_PASSWORD}}
- name: PGDATABASE
  value: {{ printf "%s_auth" $db | quote }}
{{- end -}}

{{/* Environment of an S3 client (stacks/common/s3.yaml x-s3-client-env). */}}
{{- define "mlflowkit.env.s3" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.s3Secret" . }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.s3Secret" . }}, key: AWS_SECRET_ACCESS_KEY}}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ include "mlflowkit.s3Endpoint" . | quote }}
- name: S3_BUCKET
  value: {{ .Values.s3.bucket | quote }}
{{- end -}}

{{/* The admin of basic-auth and the key its CSRF protection signs with (stacks/common/mlflow.yaml). */}}
{{- define "mlflowkit.env.auth" -}}
{{- if .Values.auth.enabled }}
{{- range list "MLFLOW_AUTH_ADMIN_USERNAME" "MLFLOW_AUTH_ADMIN_PASSWORD" "MLFLOW_FLASK_SERVER_SECRET_KEY" }}
- name: {{ . }}
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.authSecret" $ }}, key: {{ . }}}}
{{- end }}
{{- if and (include "mlflowkit.authShared" .) (not (include "mlflowkit.topology" . | fromYaml).replicated) }}
- name: MLFLOW_AUTH_CONFIG_PATH
  value: /etc/mlflowkit-auth/basic_auth.ini
{{- end }}
{{- end }}
{{- end -}}

{{/* A client of a server (serve, gc): the admin as its credentials. */}}
{{- define "mlflowkit.env.client" -}}
{{- if .Values.auth.enabled }}
- name: MLFLOW_TRACKING_USERNAME
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.authSecret" . }}, key: MLFLOW_AUTH_ADMIN_USERNAME}}
- name: MLFLOW_TRACKING_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ include "mlflowkit.authSecret" . }}, key: MLFLOW_AUTH_ADMIN_PASSWORD}}
{{- end }}
{{- end -}}

{{/* The Host headers a server accepts (--allowed-hosts): the Compose default's localhost entries, its Service
names in every in-cluster spelling, the Ingress host and the user's extras. Never a wildcard host. */}}
{{- define "mlflowkit.allowedHosts" -}}
{{- $svc := include "mlflowkit.name" (dict "root" .root "component" .component) -}}
{{- $ns := .root.Release.Namespace -}}
{{- $hosts := list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*" -}}
{{- range list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- $hosts = append $hosts . -}}
{{- $hosts = append $hosts (printf "%s:%v" . $.port) -}}
{{- end -}}
{{- with .ingressHost }}{{ $hosts = append $hosts . }}{{ end -}}
{{- join "," (concat $hosts .extra) -}}
{{- end -}}

{{- define "mlflowkit.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid }}
  runAsGroup: {{ .uid }}
  fsGroup: {{ .uid }}
  seccompProfile: {type: RuntimeDefault}
{{- with .root.Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "mlflowkit.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{/* Writable scratch of an MLflow container with a read-only root: /tmp and HOME (MLflow writes both). */}}
{{- define "mlflowkit.scratchMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: home, mountPath: /home/mlflow}
{{- end -}}
{{- define "mlflowkit.scratchVolumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 2Gi}
- name: home
  emptyDir: {sizeLimit: 1Gi}
{{- end -}}

{{/* The one-shots a server runs before it starts when the chart runs the store itself: a store that does not
exist before install cannot be prepared by a pre-install hook, and a post-install hook would deadlock
`helm install --wait` (Helm waits for the servers before post-install hooks; the servers would wait for the
hook). The same script as the Compose one-shot and the pre-upgrade Job, retried until the store answers
(bounded): pods that race on an empty database converge, the script being idempotent. The counterpart of
Compose's depends_on: service_completed_successfully. */}}
{{- define "mlflowkit.oneShotInit" -}}
- name: {{ .component }}
  image: {{ include "mlflowkit.image" (dict "root" .root "image" "mlflow") }}
  imagePullPolicy: {{ .root.Values.images.pullPolicy }}
{{- $topo := include "mlflowkit.topology" .root | fromYaml }}
  args:
    - sh
    - -c
    - 'deadline=$(($(date +%s) + 600)); until python -c "$0"; do [ "$(date +%s)" -lt "$deadline" ] || { echo "{{ .component }}: still failing after 600 s (its error above)" >&2; exit 1; }; sleep 3; done'
    - {{ .root.Files.Get (include "mlflowkit.script" (dict "root" .root "component" .component)) | toJson }}
  env:
{{- if eq .component "migrate" }}
{{ include "mlflowkit.env.backend" .root | indent 4 }}
{{- include "mlflowkit.env.usersDatabase" .root | indent 4 }}
{{- else if eq .component "create-bucket" }}
{{ include "mlflowkit.env.s3" .root | indent 4 }}
{{- else }}
{{- include "mlflowkit.env.auth" .root | indent 4 }}
{{- if $topo.replicated }}
{{ include "mlflowkit.env.pooled" (merge (dict "backend" false) .root) | indent 4 }}
{{- end }}
{{- end }}
{{ include "mlflowkit.containerSecurity" . | indent 2 }}
  resources:{{ toYaml .root.Values.jobs.resources | nindent 4 }}
  volumeMounts:
{{ include "mlflowkit.scratchMounts" . | indent 4 }}
{{- if eq .component "bootstrap-auth" }}
    - {name: auth-config, mountPath: /etc/mlflowkit-auth, readOnly: true}
{{- end }}
{{- end -}}

{{/* The file of a one-shot's script: the stores' one-shots run the image's plugin (files/prepare.py); a pooled
topology's migration also makes the users database. */}}
{{- define "mlflowkit.script" -}}
{{- $topo := include "mlflowkit.topology" .root | fromYaml -}}
{{- if and (eq .component "migrate") $topo.pooling -}}files/migrate_users.py
{{- else if has .component (list "migrate" "create-bucket") -}}files/prepare.py
{{- else -}}{{ printf "files/%s.py" (.component | replace "-" "_") }}{{- end -}}
{{- end -}}

{{/* The migration of a pooled topology makes the users database <database>_auth beside MLflow's. */}}
{{- define "mlflowkit.env.usersDatabase" -}}
{{- if (include "mlflowkit.topology" . | fromYaml).pooling }}
- name: MLFLOW_AUTH_DATABASE
  value: {{ printf "%s_auth" .Values.postgresql.database | quote }}
{{- end }}
{{- end -}}

{{/* The hook annotations of a Job that works on a store: before install and before every upgrade when the store
is external (Helm's migration step); only before upgrades when the chart runs the store (at install the servers'
init containers run the same one-shot: mlflowkit.oneShotInit). */}}
{{- define "mlflowkit.hook" -}}
helm.sh/hook: {{ if .inChart }}pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
helm.sh/hook-weight: "0"
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

# Ballast. The two commands: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export BENTOML_DO_NOT_TRACK := true

# SERVICE: a built-in service (fraud, digits, tensor), or your own as a module, a .py file or
# module:Service (python -m services.find explains; an unknown name is an error).
# make serve [SERVICE=fraud] [PORT=3000]
SERVICE ?= fraud
PORT ?= 3000
# make bento [SERVICE=...]: that service's bento; without SERVICE, fraud's and digits'.
BENTOS ?= $(if $(filter command line environment,$(origin SERVICE)),$(SERVICE),fraud digits)

# make loadtest [SERVICE=...] [URL=...] [USERS=16] [DURATION=30s] [SCENARIO=normal|faults]
#               [EXPECT_FALLBACK=0.3] [SLO=loadtests/slo.toml] [LOCUSTFILE=...]
URL ?= http://127.0.0.1:$(PORT)
USERS ?= 16
DURATION ?= 30s
SCENARIO ?= normal

.PHONY: kserve-client peers h2load install models serve bento loadtest test lint typecheck unit wrk hey nginx prometheus bench bench-smoke overload overload-edge refusal-cost soak audit rollout-drill rollout-drill-short shadow-cost audit-cost drift-cost oip-cost audit-drill drift-drill proto clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,models]"
	touch $(STAMP)

install: $(STAMP)

# Train, export and store the models (BentoML's model store); a second run changes nothing.
models: install
	$(BIN)/python -m models.build

serve: models
	target=$$($(BIN)/python -m services.find $(SERVICE)) && $(BIN)/bentoml serve $$target --port $(PORT)

# Each service's bento, with only the code it imports and the models it declares; BentoML's generated
# Dockerfile is linted with hadolint (services/package.py).
bento: models
	$(BIN)/python -m services.package $(BENTOS)

# The SLO load test against a running service (start it with `make serve`).
loadtest: install
	$(BIN)/python -m loadtests.gate --service $(SERVICE) --url $(URL) --users $(USERS) \
	  --duration $(DURATION) --scenario $(SCENARIO) $(if $(EXPECT_FALLBACK),--expect-fallback $(EXPECT_FALLBACK)) \
	  $(if $(SLO),--slo-file $(SLO)) $(if $(LOCUSTFILE),--locustfile $(LOCUSTFILE))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

unit: install nginx prometheus kserve-client
	$(BIN)/python -m pytest -q

# KServe's own V2 clients (InferenceRESTClient, InferenceGRPCClient) in a virtual environment of
# their own: KServe's requirements are not Ballast's. tests/integration/test_oip_clients.py runs
# tests/integration/kserve_client.py with its interpreter. Exact versions: constraints-kserve.txt.
KSERVE_VENV = .venv-kserve
kserve-client: $(KSERVE_VENV)/.installed-stamp

$(KSERVE_VENV)/.installed-stamp: constraints-kserve.txt
	test -x $(KSERVE_VENV)/bin/python || $(PY) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-kserve.txt kserve
	touch $@

# The peers benchmarks/compare.py measures Ballast against, each in a virtual environment of its own
# (their requirements are not Ballast's): NVIDIA Triton through PyTriton (which ships the
# tritonserver binary) and Ray Serve. Exact versions: constraints-triton.txt, constraints-ray.txt.
TRITON_VENV = .venv-triton
RAY_VENV = .venv-ray
peers: $(TRITON_VENV)/.installed-stamp $(RAY_VENV)/.installed-stamp

$(TRITON_VENV)/.installed-stamp: constraints-triton.txt
	test -x $(TRITON_VENV)/bin/python || $(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-triton.txt nvidia-pytriton onnxruntime orjson
	touch $@

$(RAY_VENV)/.installed-stamp: constraints-ray.txt
	test -x $(RAY_VENV)/bin/python || $(PY) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-ray.txt "ray[serve]" onnxruntime orjson
	touch $@

# The test command: lint, type check, the whole test suite (integration tests start real
# servers, build a bento and run a short SLO gate), the benchmark in smoke mode, and the short
# rollout drill.
test: lint typecheck unit bench-smoke rollout-drill-short

# Candidates through a fraud server under locust load: a good one to production (with a restart in
# the middle and the watch after the approval), three bad ones stopped, the watch rolling back a
# faulty promotion (about 5 minutes; loadtests/rollout_drill.py). Its own model store: yours is
# never changed.
rollout-drill: install
	$(BIN)/python -m loadtests.rollout_drill

# What a shadow of every request costs production at half capacity (benchmarks/shadow_cost.py).
shadow-cost: install wrk hey models
	$(BIN)/python -m benchmarks.shadow_cost

rollout-drill-short: install
	$(BIN)/python -m loadtests.rollout_drill --short

# What the audit trail costs the fraud chain's throughput at saturation: servers with the audit off
# and on (writer thread; writer process on the server's core and on a spare one), in interleaved
# rounds (benchmarks/audit_cost.py; about 7 minutes).
audit-cost: install wrk hey models
	$(BIN)/python -m benchmarks.audit_cost

# What drift watching costs the fraud chain's throughput at saturation: servers with drift off and
# on, in interleaved rounds (benchmarks/drift_cost.py; about 3 minutes).
drift-cost: install wrk hey models
	$(BIN)/python -m benchmarks.drift_cost

# The Open Inference Protocol's JSON route against the service's own JSON route on one tensor server
# (the heavy MLP), interleaved rounds at saturation (benchmarks/oip_cost.py; about 3 minutes).
oip-cost: install wrk hey
	$(BIN)/python -m benchmarks.oip_cost

# A fraud server with the audit trail on under locust load (a canary held at 50 %): a row per 200, on
# its route, none dropped, the chain verifies (loadtests/audit_drill.py; about 70 s). Its own model
# store and databases.
audit-drill: install
	$(BIN)/python -m loadtests.audit_drill

# A fraud server under locust load whose traffic moves from the usual context to another season,
# back, and to another country mix: nothing confirmed while usual, each move confirmed on the
# features it moved, the alarm in /metrics and GET /v1/drift (loadtests/drift_drill.py; about 2
# minutes). Result in docs/operations/results/drift-drill.md.
drift-drill: install models
	$(BIN)/python -m loadtests.drift_drill

# The Open Inference Protocol's gRPC code, generated from services/oip/inference.proto (a test
# checks that the committed files are what this makes).
proto: install
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. services/oip/inference.proto

# wrk drives the HTTP benchmarks (Debian package; this installs it as root when missing).
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null) || \
	  (echo "wrk is needed: apt-get install wrk" && exit 1)

# h2load drives the gRPC points of the side-by-side benchmark (Debian's nghttp2-client, like wrk).
h2load:
	@command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null) || \
	  (echo "h2load is needed: apt-get install nghttp2-client" && exit 1)

# Side-by-side serving benchmark (benchmarks/compare.py: the heavy MLP with a 5-minute soak, the
# digits model, the fraud chain against itself with checks and metrics off) and the in-process
# runtime overhead. About 30 minutes; results in benchmarks/results/.
bench: install wrk h2load models peers
	$(BIN)/python -m benchmarks.compare --model mlp --threads 2 --max-batch 128 --soak 300
	$(BIN)/python -m benchmarks.compare --model digits
	$(BIN)/python -m benchmarks.compare --model fraud --repeats 3 --seconds 5
	$(BIN)/python -m benchmarks.runtime_overhead

# hey drives the overload and soak drills at a fixed rate (Debian package, like wrk).
hey:
	@command -v hey >/dev/null || (apt-get update -qq && apt-get install -y -qq hey >/dev/null) || \
	  (echo "hey is needed: apt-get install hey" && exit 1)

# nginx for the drill with a proxy at the edge (Debian package, like wrk).
nginx:
	@command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null) || \
	  (echo "nginx is needed: apt-get install nginx-light" && exit 1)

# promtool checks and unit-tests the alerting rules (deploy/prometheus; Debian package, like wrk).
prometheus:
	@command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq prometheus >/dev/null) || \
	  (echo "prometheus is needed: apt-get install prometheus" && exit 1)

# Reliability drills that take minutes, not part of `make test` (results in benchmarks/results/):
# a burst at 4x measured capacity for 60 s (one worker alone, capped at the concurrency of its
# capacity; then with nginx in front on the load generator's core), and 10 minutes at 70 % of capacity.
# Each runs both models and fails at the end if either missed a check.
overload: install wrk hey models
	status=0; \
	$(BIN)/python -m benchmarks.overload --model fraud --ballast-env BALLAST_MAX_INFLIGHT=32 || status=1; \
	$(BIN)/python -m benchmarks.overload --model mlp --ballast-env BALLAST_MAX_INFLIGHT=32 || status=1; \
	exit $$status

overload-edge: install wrk hey nginx models
	status=0; \
	$(BIN)/python -m benchmarks.overload --model fraud --proxy nginx --proxy-cpu 1 || status=1; \
	$(BIN)/python -m benchmarks.overload --model mlp --proxy nginx --proxy-cpu 1 || status=1; \
	exit $$status

# CPU per answer: Ballast's door refusal, nginx's refusal and pass, uvicorn's cheapest 200.
refusal-cost: install wrk nginx
	$(BIN)/python -m benchmarks.refusal_cost

soak: install wrk hey models
	$(BIN)/python -m benchmarks.soak

# Known vulnerabilities in the locked dependencies (constraints.txt); needs PyPI (tools/audit.py).
audit: install
	$(BIN)/python -m tools.audit

bench-smoke: install wrk h2load hey nginx models peers
	$(BIN)/python -m benchmarks.compare --smoke
	$(BIN)/python -m benchmarks.runtime_overhead --smoke
	$(BIN)/python -m benchmarks.cache_cost --smoke
	$(BIN)/python -m benchmarks.refusal_cost --seconds 1 --rounds 1
	$(BIN)/python -m benchmarks.audit_cost --smoke
	$(BIN)/python -m benchmarks.drift_cost --smoke
	$(BIN)/python -m benchmarks.oip_cost --smoke

clean:
	rm -rf $(VENV) $(KSERVE_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

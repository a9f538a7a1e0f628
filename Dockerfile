# chatmodels: one image for the web servers and for one-off commands (migrate, register_model).
# Build: docker build -t chatmodels .   Run: see compose.yaml and docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

RUN useradd --system --create-home --uid 10001 --user-group chatmodels
COPY . .
# Static files are collected into the image (served by whitenoise). Settings need a secret to
# load: this one exists only during this build step and is never used to serve anything.
RUN SECRET_KEY=build-only-collectstatic ENV_FILE= python manage.py collectstatic --noinput -v 0 \
    && mkdir -p var \
    && chown chatmodels:chatmodels var

USER chatmodels
# Local folders (var/) are per container: with S3 they only hold the unpacked-model cache.
# In a container the server listens on every interface; PYTHON is the image's own.
ENV HOST=0.0.0.0 \
    PORT=8000 \
    PYTHON=python
EXPOSE 8000
CMD ["./scripts/server"]

# The production image: one image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 STATIC_ROOT=/app/staticfiles
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Hashed, compressed static files served by WhiteNoise; the key only lives for this step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 octopus \
    && mkdir -p /app/var && chown -R octopus /app/var /app/plugins
USER octopus

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "octopus.asgi:application"]

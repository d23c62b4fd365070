# tenantsvc image (used by fly.toml; each process group picks its role with its command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml setup.cfg README.md /src/
COPY tenantsvc /src/tenantsvc
COPY twisted /src/twisted

# Install the package (it ships twisted/plugins/tenantsvc_plugin.py) and drop the sources; build
# Twisted's plugin cache now, as root, because the service user cannot write into site-packages.
RUN pip install /src \
 && rm -rf /src \
 && cd / && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && twistd --help | grep -qw tenantsvc \
 && useradd --system --uid 10001 --home-dir /app --create-home tenantsvc

# The working directory is writable by the service user (./var/ is only used without DATABASE_URL).
WORKDIR /app
USER tenantsvc
EXPOSE 8080
# fly.toml's [processes] replace this per group; on its own the image runs one web instance.
CMD ["twistd", "--nodaemon", "--pidfile=", "--logger=tenantsvc.obs.logging.twisted_observer", "tenantsvc", "--role", "web"]

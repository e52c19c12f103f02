# One image for every jobsched service; the command picks the role:
#   docker run jobsched api | scheduler | worker | standalone | migrate
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 jobsched
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/config.yaml.example /etc/jobsched/config.yaml
USER jobsched
WORKDIR /home/jobsched
ENV JOBSCHED_CONFIG=/etc/jobsched/config.yaml \
    JOBSCHED_API_HOST=0.0.0.0 \
    JOBSCHED_METRICS_HOST=0.0.0.0
# API; scheduler metrics and health; worker metrics and health (deploy/kubernetes, docker-compose.yml)
EXPOSE 8080 9100 9101
ENTRYPOINT ["jobsched"]
CMD ["standalone"]

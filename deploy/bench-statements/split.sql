-- An unfinished delivery's state in a narrow table of its own (split.ddl): the fan-out inserts the history row
-- and a work row, the claim is a HOT update of the work row, the record deletes it and updates the history row once (HOT).
WITH ins AS (
  INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at, in_flight, occurred_at)
  SELECT webhook_uuid_v7(), :sub::uuid, 'email.received', gen_random_uuid(), :pay, 'pending', 0, 6, now(), now(), false, NULL
  FROM generate_series(1, 20)
  ON CONFLICT DO NOTHING
  RETURNING id, subscription_id, max_attempts),
w AS (INSERT INTO webhook_work (id, subscription_id, max_attempts, next_retry_at) SELECT id, subscription_id, max_attempts, now() FROM ins)
SELECT array_agg(id)::text AS ids FROM ins \gset
UPDATE webhook_work w SET attempt_count = w.attempt_count + 1, first_attempt_at = COALESCE(w.first_attempt_at, now()), last_attempt_at = now(),
  lease_until = now() + make_interval(secs => s.timeout_seconds + 30), held_by = :dispatcher::uuid, in_flight = true
FROM webhook_deliveries d, webhook_subscriptions s
WHERE w.id = ANY (:ids::uuid[]) AND d.id = w.id AND d.id = ANY (:ids::uuid[]) AND s.id = w.subscription_id AND s.is_active AND s.deleted_at IS NULL
  AND w.attempt_count < w.max_attempts AND NOT w.in_flight
RETURNING w.id, d.payload, s.url, s.secret, w.last_attempt_at;
WITH claimed AS (
  DELETE FROM webhook_work w WHERE w.id = ANY (:ids::uuid[]) AND w.in_flight RETURNING w.id, w.attempt_count, w.subscription_id, w.first_attempt_at, w.last_attempt_at),
attempt AS (
  INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome, error_message, response_excerpt)
  SELECT id, attempt_count, now(), 2, 200, 'success', NULL, 'ok' FROM claimed ON CONFLICT DO NOTHING),
delivery AS (
  UPDATE webhook_deliveries d SET status = 'success', response_status_code = 200, response_body = 'ok', error_message = NULL,
    attempt_count = c.attempt_count, first_attempt_at = c.first_attempt_at, last_attempt_at = c.last_attempt_at, completed_at = now(), next_retry_at = NULL
  FROM claimed c WHERE d.id = c.id AND d.id = ANY (:ids::uuid[]) AND d.status NOT IN ('success', 'failed', 'cancelled')
  RETURNING d.id, d.subscription_id),
counters AS (
  UPDATE webhook_subscriptions s SET total_deliveries = s.total_deliveries + g.n, successful_deliveries = s.successful_deliveries + g.n
  FROM (SELECT subscription_id, count(*) AS n FROM delivery GROUP BY subscription_id) g WHERE s.id = g.subscription_id)
SELECT count(*) FROM delivery;

-- current.sql with every delivery claimed at insert: the row is written as the claim would leave it,
-- and there is no claim statement (what claiming a lane's backlog in memory would give).
WITH ins AS (
  INSERT INTO webhook_deliveries (id, subscription_id, event_type, event_id, payload, status, attempt_count, max_attempts, created_at, next_retry_at, in_flight, occurred_at)
  SELECT webhook_uuid_v7(), :sub::uuid, 'email.received', gen_random_uuid(), :pay, 'pending', 1, 6, now(), now() + interval '60 s', true, NULL
  FROM generate_series(1, 20)
  ON CONFLICT DO NOTHING
  RETURNING id)
SELECT array_agg(id)::text AS ids FROM ins \gset
WITH claimed AS (
  SELECT d.id, d.attempt_count, d.subscription_id FROM webhook_deliveries d WHERE d.id = ANY (:ids::uuid[]) AND d.in_flight FOR UPDATE OF d),
attempt AS (
  INSERT INTO webhook_delivery_attempts (delivery_id, attempt_number, attempted_at, duration_ms, status_code, outcome, error_message, response_excerpt)
  SELECT id, attempt_count, now(), 2, 200, 'success', NULL, 'ok' FROM claimed ON CONFLICT DO NOTHING),
delivery AS (
  UPDATE webhook_deliveries d SET status = 'success', response_status_code = 200, response_body = 'ok', error_message = NULL,
    attempt_count = c.attempt_count, completed_at = now(), next_retry_at = NULL, lost_attempts = 0, in_flight = false, held_by = NULL
  FROM claimed c WHERE d.id = c.id AND d.id = ANY (:ids::uuid[]) AND d.status NOT IN ('success', 'failed', 'cancelled')
  RETURNING d.id, d.subscription_id),
counters AS (
  UPDATE webhook_subscriptions s SET total_deliveries = s.total_deliveries + g.n, successful_deliveries = s.successful_deliveries + g.n
  FROM (SELECT subscription_id, count(*) AS n FROM delivery GROUP BY subscription_id) g WHERE s.id = g.subscription_id)
SELECT count(*) FROM delivery;

-- debrief.v1.MeetingService/GetMeeting: the statements of one call, as
-- debrief-bench --compare gives them to pgbench and to the SQLite loop.
-- `:name` stands for a parameter (pgbench -M prepared binds it); a NULL
-- parameter is written NULL. tests/api/bench_sql.rs checks that this is
-- exactly what the code sends, statement by statement. debrief sends
-- BEGIN and the settings in one message (their values as literals);
-- pgbench sends each statement on its own, as a client of the same SQL
-- would without that.
BEGIN;
SELECT set_config('app.user_id', :user_id, true), set_config('app.role', :role, true);
SELECT "meetings"."id", "meetings"."user_id", "meetings"."title", "meetings"."description", "meetings"."status", "meetings"."occurred_at", "meetings"."participant_count", "meetings"."tags", "meetings"."current_stage", "meetings"."failure_reason", "meetings"."upload_id", "meetings"."file_name", "meetings"."content_type", "meetings"."size_bytes", "meetings"."duration_ms", "meetings"."codec", "meetings"."sample_rate_hz", "meetings"."channels", "meetings"."original_object", "meetings"."request_id", "meetings"."processed_at", "meetings"."deleted_at", "meetings"."kind", "meetings"."created_at", "meetings"."updated_at" FROM "meetings" WHERE "meetings"."user_id" = :user_id AND "meetings"."id" = :meeting_id AND "meetings"."deleted_at" IS NULL LIMIT :limit;
ROLLBACK;

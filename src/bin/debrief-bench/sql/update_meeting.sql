-- debrief.v1.MeetingService/UpdateMeeting of the title: the statements of
-- one call, as debrief-bench --compare gives them to pgbench and to the
-- SQLite loop.
-- `:name` stands for a parameter (pgbench -M prepared binds it); a NULL
-- parameter is written NULL. tests/api/bench_sql.rs checks that this is
-- exactly what the code sends, statement by statement. debrief sends
-- BEGIN and the settings in one message (their values as literals);
-- pgbench sends each statement on its own, as a client of the same SQL
-- would without that.
BEGIN;
SELECT set_config('app.user_id', :user_id, true), set_config('app.role', :role, true);
UPDATE "meetings" SET "title" = :title, "updated_at" = :now WHERE "meetings"."user_id" = :user_id AND "meetings"."id" = :meeting_id AND "meetings"."deleted_at" IS NULL RETURNING "id", "user_id", "title", "description", "status", "occurred_at", "participant_count", "tags", "current_stage", "failure_reason", "upload_id", "file_name", "content_type", "size_bytes", "duration_ms", "codec", "sample_rate_hz", "channels", "original_object", "request_id", "processed_at", "deleted_at", "kind", "created_at", "updated_at";
COMMIT;

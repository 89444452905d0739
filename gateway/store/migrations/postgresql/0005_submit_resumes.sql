-- 0005 (twin of sqlite/0005): how many resume() runs found nothing for a submit (it is abandoned after a few; see gateway/jobs/fate.py).
ALTER TABLE submits ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;

DROP TABLE projects; DROP TABLE plans;

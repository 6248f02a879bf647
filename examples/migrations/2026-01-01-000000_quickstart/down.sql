DROP TABLE customers;
DROP TABLE plans;

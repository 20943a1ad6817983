"""The partner side: the reference subscriber and the contract partners build against."""

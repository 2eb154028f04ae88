package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetProfileNames lists the names of the profiles.
func (c *Client) GetProfileNames(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.get(ctx, "/1.0/profiles", nil, &urls); err != nil {
		return nil, err
	}
	return namesFromURLs(urls), nil
}

// GetProfiles lists the profiles.
func (c *Client) GetProfiles(ctx context.Context) ([]api.Profile, error) {
	var profiles []api.Profile
	if _, err := c.get(ctx, "/1.0/profiles", recursion(1), &profiles); err != nil {
		return nil, err
	}
	return profiles, nil
}

// GetProfile returns one profile and its ETag.
func (c *Client) GetProfile(ctx context.Context, name string) (*api.Profile, string, error) {
	var p api.Profile
	etag, err := c.get(ctx, urlPath("profiles", name), nil, &p)
	if err != nil {
		return nil, "", err
	}
	return &p, etag, nil
}

// CreateProfile creates a profile.
func (c *Client) CreateProfile(ctx context.Context, p api.ProfilesPost) error {
	return c.sync(ctx, http.MethodPost, "/1.0/profiles", p, "")
}

// UpdateProfile replaces a profile's config, description and devices.
func (c *Client) UpdateProfile(ctx context.Context, name string, put api.ProfilePut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("profiles", name), put, etag)
}

// PatchProfile merges config keys and devices into a profile.
func (c *Client) PatchProfile(ctx context.Context, name string, put api.ProfilePut, etag string) error {
	return c.sync(ctx, http.MethodPatch, urlPath("profiles", name), put, etag)
}

// RenameProfile renames a profile.
func (c *Client) RenameProfile(ctx context.Context, name, newName string) error {
	return c.sync(ctx, http.MethodPost, urlPath("profiles", name), api.ProfilePost{Name: newName}, "")
}

// DeleteProfile deletes a profile.
func (c *Client) DeleteProfile(ctx context.Context, name string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("profiles", name), nil, "")
}
